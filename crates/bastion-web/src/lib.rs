//! The dashboard's HTML: the page chrome every page shares, SVG charts, number and time
//! formatting, and the posture score. Pages are functions of data: this crate does no IO,
//! knows no database and no HTTP (the server's `dashboard` module fetches and serves).
//! Every value is escaped by `maud`; nothing here emits inline scripts or styles, so the
//! strict Content-Security-Policy the server sends holds.

pub mod assets;
pub mod chart;
pub mod fmt;
pub mod layout;
pub mod posture;

pub use maud::{Markup, PreEscaped, html};
