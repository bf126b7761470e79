//! The live sale console end to end in a real headless browser: a gateway (and a persister)
//! of this test, a sale, and `gateway/tests/browser/console.mjs` driving Debian's chromium
//! through playwright-core (`scripts/browser.sh` installs both; a missing one fails the test).

use std::path::{Path, PathBuf};
use std::time::Duration;

use flashgate_gateway::auth::Role;
use http::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

/// Shoppers whose purchases make the rush (one unit each, round the list).
const SHOPPERS: usize = 20;

/// The workspace's root: the script's paths and a relative screenshot path start there.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway crate sits in the workspace")
        .to_path_buf()
}

/// Panics, naming what is missing and the script that installs it, unless node, chromium and
/// playwright-core are all there: a machine without them must not pass by skipping.
fn require_browser() {
    let fix =
        "run scripts/browser.sh (as root on Debian; it installs chromium and playwright-core)";
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|out| out.status.success()),
        "node is not on PATH: {fix}"
    );
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    assert!(
        std::env::var_os("FLASHGATE_CHROMIUM").is_some()
            || on_path("chromium")
            || on_path("chromium-browser"),
        "chromium is not on PATH: {fix}"
    );
    let stack = std::env::var_os("FLASHGATE_STACK_DIR")
        .map_or_else(|| repo().join(".stack"), PathBuf::from);
    let dir = std::env::var_os("FLASHGATE_BROWSER_DIR")
        .map_or_else(|| stack.join("browser"), PathBuf::from);
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed in {}: {fix}",
        dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_watches_a_rush_live_in_a_real_browser_and_pauses_the_sale_from_the_page() {
    require_browser();
    let app = spawn_app().await;
    // The persister too, so the console's `persisted` column moves as it would in production.
    let persister = app.start_persister().await;
    let sale_id = app
        .sale(json!({
            "title": "Midnight sneaker drop",
            "sku": "SNK-0042",
            "stock": 100_000,
            "per_user_limit": 100_000,
        }))
        .await;
    // Another open sale, which the page shows too and the first one's buttons leave alone.
    let other_sale_id = app
        .sale(json!({"title": "Winter jacket restock", "sku": "JKT-0007", "stock": 500}))
        .await;
    let manager = app.token("console-manager", Role::Manager);
    let shoppers: Vec<String> = (0..SHOPPERS)
        .map(|i| app.token(&format!("console-shopper-{i}"), Role::Shopper))
        .collect();

    // FLASHGATE_CONSOLE_SCREENSHOT, when set, passes through to the script with the rest of
    // the environment.
    let run = tokio::process::Command::new("node")
        .arg("gateway/tests/browser/console.mjs")
        .current_dir(repo())
        .env("FLASHGATE_CONSOLE_ADDR", app.addr.to_string())
        .env("FLASHGATE_CONSOLE_MANAGER_TOKEN", &manager)
        .env("FLASHGATE_CONSOLE_SHOPPER_TOKENS", shoppers.join(","))
        .env("FLASHGATE_CONSOLE_SALE_ID", sale_id.to_string())
        .env("FLASHGATE_CONSOLE_OTHER_SALE_ID", other_sale_id.to_string())
        .kill_on_drop(true)
        .output();
    // The script bounds each of its waits (15 s) and its whole run (90 s); this is the backstop.
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser test finishes within 3 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    // The page's last click left the sale paused: the gateway says so, and refuses purchases.
    let sale = app.get_sale(sale_id).await;
    assert_eq!(sale.status, StatusCode::OK, "{}", sale.json);
    assert_eq!(sale.json["status"], "paused", "{}", sale.json);
    let refused = app.purchase(sale_id, "console-shopper-0", 1).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.json);
    assert_eq!(refused.code(), "sale_not_active");
    let other = app.get_sale(other_sale_id).await;
    assert_eq!(other.json["status"], "active", "{}", other.json);

    persister.stop().await;
    app.stop().await;
}
