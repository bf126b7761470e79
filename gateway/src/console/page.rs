//! The console page, built into the binary: one HTML file with its CSS and script inline, so
//! it needs nothing from a network.

/// The page (`gateway/src/console/console.html`).
pub const PAGE: &str = include_str!("console.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_fetches_nothing_but_the_gateway_s_own_routes() {
        // The one absolute address is the SVG namespace, a name and never fetched.
        let without_namespace = PAGE.replace("http://www.w3.org/2000/svg", "");
        assert!(!without_namespace.contains("http://") && !without_namespace.contains("https://"));
        assert!(!PAGE.contains("<script src"), "no external script");
        assert!(PAGE.contains("/v1/admin/events"));
        assert!(PAGE.contains("sessionStorage"));
    }
}
