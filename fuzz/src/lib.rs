//! Shared by the fuzz targets and the seed generator (`examples/seeds.rs`).

/// A fixed age identity: the `wrapped_key` target unwraps with it, and the seed generator
/// wraps key bundles for it. A throwaway test key that protects nothing.
pub const IDENTITY: &str =
    "AGE-SECRET-KEY-1UTMXJYNGFDPTRW4K0H409JHDT7GC34TPJ6DWF2NP3TWRD7DF8T5QH7YQH5";

/// The recipient of [`IDENTITY`].
pub const RECIPIENT: &str = "age1ng8wjaqphqa9kpufsap8tdeqzt59jyg6klqcyjfmvy5q9dy99spsmk2xnh";
