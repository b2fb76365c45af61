//! The API token: required on any listener beyond loopback, compared in constant time.

/// Whether `offered` is `token`, in time that depends only on their lengths (so a wrong guess
/// says nothing about how much of it was right).
pub fn token_matches(offered: &str, token: &str) -> bool {
    let (a, b) = (offered.as_bytes(), token.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn only_the_exact_token_matches() {
        assert!(token_matches("s3cret-token", "s3cret-token"));
        assert!(!token_matches("s3cret-tokeN", "s3cret-token"));
        assert!(
            !token_matches("s3cret", "s3cret-token"),
            "a prefix is not the token"
        );
        assert!(!token_matches("s3cret-token-and-more", "s3cret-token"));
        assert!(!token_matches("", "s3cret-token"));
    }
}
