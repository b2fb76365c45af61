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

/// Undoes `encodeURIComponent` (the web page stores the token in a cookie that way).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

    #[test]
    fn cookies_decode_as_the_page_encoded_them() {
        assert_eq!(super::percent_decode("a%2Fb%3D%3D"), "a/b==");
        assert_eq!(super::percent_decode("plain-token"), "plain-token");
        assert_eq!(super::percent_decode("bad%zz"), "bad%zz");
    }
}
