//! Errors as cwtap reports them: an error with every cause behind it.

/// An error and its sources, `: `-separated (TLS causes sit deep in the chain).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
