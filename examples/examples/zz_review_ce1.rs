use axum::{routing::get, Router};
use tower_bulwark::breaker::CircuitBreakerLayer;

fn main() {
    let breaker = CircuitBreakerLayer::builder().name("checkout").build().unwrap();
    let app: Router = Router::new().route("/", get(|| async { "hi" })).layer(breaker);
}
