//! `codec::http1::read_response` over arbitrary bytes, delivered in chunks
//! of a size the input chooses (so partial heads, split chunk sizes and
//! short reads are all explored), into a buffer whose size the input also
//! chooses.
#![no_main]

use core::convert::Infallible;

use libfuzzer_sys::fuzz_target;
use paywall_auth::codec::http1::read_response;

/// Hands out at most `step` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl embedded_io::ErrorType for Trickle<'_> {
    type Error = Infallible;
}

impl embedded_io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let (step, cap, bytes) = match data {
        [s, c, rest @ ..] => (usize::from(*s % 64) + 1, 64 + usize::from(*c) * 16, rest),
        _ => return,
    };
    let mut buf = vec![0u8; cap];
    let mut reader = Trickle { data: bytes, step };
    if let Ok(response) = read_response(&mut reader, &mut buf) {
        assert!(response.body.len() <= cap);
        // httparse guarantees three digits; 0xx is accepted as a final
        // status today (reported: RFC 9110 §15 allows 100..=599 only).
        assert!(response.status < 1000);
    }
});
