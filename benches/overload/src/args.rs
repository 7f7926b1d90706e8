//! The command line: which cells to run, and for how long.

use std::time::Duration;

use crate::client::Proto;
use crate::guard::Guard;
use crate::shape::Shape;

/// How to call the bench.
pub const USAGE: &str = "\
usage: cargo bench -p tower-bulwark-overload --bench overload -- [options]

  --seconds N     measured seconds per cell (default 5)
  --warmup N      unmeasured seconds of load before each cell (default 1)
  --shape S,..    shapes whose name starts with S: 1ms/4 1ms/64 10ms/4 10ms/64 100ms/4
                  100ms/64 cpu-1ms/<cores> (default all)
  --load L,..     loads, times the capacity: 1 2 4 8 (default all)
  --guard G,..    unprotected tower-static vegas aimd gradient2 preset (default all)
  --proto P,..    h1 h2 grpc, both (= h1,h2) or all (default all); gRPC runs the
                  10ms/4 shape at 4x only
Options may repeat; values may be comma-separated.";

/// The loads of a full run.
pub const LOADS: [f64; 4] = [1.0, 2.0, 4.0, 8.0];

/// The parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// Measured time per cell.
    pub seconds: Duration,
    /// Load sent before each cell's window.
    pub warmup: Duration,
    /// Shape name prefixes (empty: all).
    pub shapes: Vec<String>,
    /// Loads to run.
    pub loads: Vec<f64>,
    /// Guard names (empty: all).
    pub guards: Vec<String>,
    /// Protocols to run.
    pub protos: Vec<Proto>,
}

impl Args {
    /// Parses the arguments after the program's name (cargo's `--bench` is ignored).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
        let mut parsed = Args {
            seconds: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            shapes: Vec::new(),
            loads: Vec::new(),
            guards: Vec::new(),
            protos: Vec::new(),
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--bench" {
                continue;
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
                None => (arg, None),
            };
            if flag == "--help" || flag == "-h" {
                return Err(String::new());
            }
            let mut inline = inline;
            let mut value = || {
                inline
                    .take()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--seconds" => parsed.seconds = seconds(&flag, &value()?)?,
                "--warmup" => parsed.warmup = seconds(&flag, &value()?)?,
                "--shape" => parsed.shapes.extend(list(&value()?).map(String::from)),
                "--guard" => {
                    for name in list(&value()?) {
                        if !Guard::all().iter().any(|g| g.name() == name) {
                            return Err(format!("--guard: no guard named {name:?}"));
                        }
                        parsed.guards.push(name.to_string());
                    }
                }
                "--load" => {
                    for load in list(&value()?) {
                        let number = load.strip_suffix('x').unwrap_or(load);
                        match number.parse::<f64>() {
                            Ok(l) if l.is_finite() && l > 0.0 && l <= 1000.0 => {
                                parsed.loads.push(l)
                            }
                            _ => {
                                return Err(format!("--load: {load:?} is not a load in (0, 1000]"))
                            }
                        }
                    }
                }
                "--proto" => {
                    for proto in list(&value()?) {
                        parsed.protos.extend_from_slice(match proto {
                            "h1" => &[Proto::H1],
                            "h2" => &[Proto::H2],
                            "grpc" => &[Proto::Grpc],
                            "both" => &[Proto::H1, Proto::H2],
                            "all" => &[Proto::H1, Proto::H2, Proto::Grpc],
                            _ => return Err(format!("--proto: unknown protocol {proto:?}")),
                        });
                    }
                }
                _ => return Err(format!("unknown argument {flag:?}")),
            }
        }
        if parsed.seconds.is_zero() {
            return Err("--seconds: the measured window must be longer than 0".into());
        }
        if parsed.loads.is_empty() {
            parsed.loads = LOADS.to_vec();
        }
        if parsed.protos.is_empty() {
            parsed.protos = vec![Proto::H1, Proto::H2, Proto::Grpc];
        }
        Ok(parsed)
    }

    /// Whether `shape` is selected.
    pub fn wants_shape(&self, shape: &Shape) -> bool {
        let name = shape.name();
        self.shapes.is_empty() || self.shapes.iter().any(|s| name.starts_with(s.as_str()))
    }

    /// Whether `guard` is selected.
    pub fn wants_guard(&self, guard: &Guard) -> bool {
        self.guards.is_empty() || self.guards.iter().any(|g| g == guard.name())
    }

    /// Whether `proto` is selected.
    pub fn wants_proto(&self, proto: Proto) -> bool {
        self.protos.contains(&proto)
    }
}

/// The comma-separated values of an option.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|v| !v.is_empty())
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{flag}: {value:?} is not a number of seconds in [0, 3600]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn defaults_run_everything() {
        let args = parse(&["--bench"]).unwrap();
        assert_eq!(args.seconds, Duration::from_secs(5));
        assert_eq!(args.warmup, Duration::from_secs(1));
        assert_eq!(args.loads, LOADS);
        assert_eq!(args.protos, [Proto::H1, Proto::H2, Proto::Grpc]);
        assert!(Shape::all().iter().all(|s| args.wants_shape(s)));
        assert!(Guard::all().iter().all(|g| args.wants_guard(g)));
    }

    #[test]
    fn filters_select_subsets() {
        let args = parse(&[
            "--shape",
            "10ms/4",
            "--load=1,4x",
            "--guard",
            "preset",
            "--guard",
            "unprotected,tower-static",
            "--proto",
            "both",
            "--seconds",
            "2.5",
        ])
        .unwrap();
        assert_eq!(args.seconds, Duration::from_millis(2500));
        assert_eq!(args.loads, [1.0, 4.0]);
        assert_eq!(args.protos, [Proto::H1, Proto::H2]);
        let shapes: Vec<String> = Shape::all()
            .iter()
            .filter(|s| args.wants_shape(s))
            .map(Shape::name)
            .collect();
        assert_eq!(shapes, ["10ms/4"]);
        let guards: Vec<&str> = Guard::all()
            .iter()
            .filter(|g| args.wants_guard(g))
            .map(Guard::name)
            .collect();
        assert_eq!(guards, ["unprotected", "tower-static", "preset"]);
        let cpu = parse(&["--shape", "cpu"]).unwrap();
        let shapes: Vec<Shape> = Shape::all()
            .into_iter()
            .filter(|s| cpu.wants_shape(s))
            .collect();
        assert_eq!(shapes, [Shape::cpu(1)]);
    }

    #[test]
    fn bad_arguments_are_refused_by_name() {
        for (args, error) in [
            (&["--seconds"][..], "--seconds needs a value"),
            (
                &["--seconds", "-1"],
                "--seconds: \"-1\" is not a number of seconds in [0, 3600]",
            ),
            (
                &["--warmup", "NaN"],
                "--warmup: \"NaN\" is not a number of seconds in [0, 3600]",
            ),
            (&["--load", "0"], "--load: \"0\" is not a load in (0, 1000]"),
            (
                &["--load", "inf"],
                "--load: \"inf\" is not a load in (0, 1000]",
            ),
            (&["--guard", "envoy"], "--guard: no guard named \"envoy\""),
            (&["--proto", "h3"], "--proto: unknown protocol \"h3\""),
            (&["10ms"], "unknown argument \"10ms\""),
            (
                &["--seconds", "0"],
                "--seconds: the measured window must be longer than 0",
            ),
        ] {
            assert_eq!(parse(args), Err(error.to_string()), "{args:?}");
        }
    }
}
