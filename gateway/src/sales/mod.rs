//! Flash sales: the sale (MySQL record, Redis state), the admission of a purchase, the
//! sold-out memory and the restock messages that clear it.

pub mod admin;
pub mod admission;
pub mod purchase;
pub mod restock;
pub mod sale;
pub mod soldout;
pub mod state;
pub mod store;
