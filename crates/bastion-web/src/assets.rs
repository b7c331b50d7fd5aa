//! The stylesheet and the one script, compiled into the binary (no CDN, nothing to install).

pub const CSS: &str = include_str!("../assets/app.css");
pub const JS: &str = include_str!("../assets/app.js");

/// An embedded asset by file name: its content type and bytes.
pub fn get(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "app.css" => Some(("text/css; charset=utf-8", CSS)),
        "app.js" => Some(("text/javascript; charset=utf-8", JS)),
        _ => None,
    }
}
