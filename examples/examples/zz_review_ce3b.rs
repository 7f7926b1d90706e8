use tower::{ServiceBuilder, ServiceExt};
use tower_bulwark::breaker::CircuitBreakerLayer;
use tower_bulwark::HttpClassifier;

#[tokio::main]
async fn main() {
    let breaker = CircuitBreakerLayer::builder().classifier(HttpClassifier).build().unwrap();
    let client = ServiceBuilder::new().layer(breaker).service(reqwest::Client::new());
    let request = reqwest::Client::new().get("http://x/").build().unwrap();
    let _ = client.oneshot(request).await;
}
