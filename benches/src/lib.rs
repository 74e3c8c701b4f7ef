//! Benches for lasier-rs live in `benches/`; this library only serves the
//! `report` binary.
