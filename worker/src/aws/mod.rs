//! The AWS Lambda management API and AWS Signature Version 4, independent of any transport.

pub mod credentials;
pub mod sigv4;
