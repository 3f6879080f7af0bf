//! The worker side: only the receive path lives in Rust; routing `listen`
//! calls and building sockets is the JS shim's job (`js/child.js`).

mod first_bytes;
pub mod receiver;
