pub mod sandbox;
pub mod upstream;
