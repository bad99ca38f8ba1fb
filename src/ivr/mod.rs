//! IVR: the dialplan language (model, loader with file:line errors), expressions, the
//! say-number/date/money composer, and the pure interpreter. See docs/dialplan.md.

pub mod dialplan;
pub mod expr;
pub mod hours;
pub mod interpreter;
pub mod language;
pub mod loader;
pub mod say;
