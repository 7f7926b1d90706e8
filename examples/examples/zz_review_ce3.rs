use tower::ServiceBuilder;
use tower_bulwark::breaker::CircuitBreakerLayer;
use tower_bulwark::HttpClassifier;

fn main() {
    let breaker = CircuitBreakerLayer::builder().classifier(HttpClassifier).build().unwrap();
    let client = ServiceBuilder::new().layer(breaker).service(reqwest::Client::new());
    tower_bulwark::expect_service::<reqwest::Request, _>(&client);
}
