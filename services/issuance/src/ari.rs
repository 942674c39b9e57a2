//! ACME Renewal Information style renewal windows (RFC 9773).
//!
//! The window is the last third of a certificate's lifetime. Inside it, each certificate gets
//! one suggested moment derived from its serial, so a fleet issued in one burst does not come
//! back in one burst, and asking twice gives the same answer.

use certmesh_crypto::digest;
use chrono::{DateTime, Duration, Utc};

/// When to renew a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalWindow {
    /// Renewal should not start before this.
    pub start: DateTime<Utc>,
    /// The certificate's notAfter.
    pub end: DateTime<Utc>,
    /// The suggested moment, inside `[start, end)`.
    pub renew_at: DateTime<Utc>,
}

/// The window for a certificate with this serial (raw bytes) and validity.
pub fn renewal_window(
    serial: &[u8],
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> RenewalWindow {
    let lifetime = (not_after - not_before).num_seconds().max(0);
    let start = not_before + Duration::seconds(lifetime - lifetime / 3);
    let span = (not_after - start).num_seconds().max(1);
    let hash = digest::sha256(serial);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    // span >= 1 and fits in i64, so the offset is in [0, span).
    let offset = (u64::from_be_bytes(first) % span.unsigned_abs()) as i64;
    RenewalWindow {
        start,
        end: not_after,
        renew_at: start + Duration::seconds(offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_the_last_third_and_renew_at_is_inside_and_stable() {
        let nb = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let na = nb + Duration::days(90);
        let w = renewal_window(&[0x01, 0x02], nb, na);
        assert_eq!(w.start, nb + Duration::days(60));
        assert_eq!(w.end, na);
        assert!(w.renew_at >= w.start && w.renew_at < w.end);
        assert_eq!(w, renewal_window(&[0x01, 0x02], nb, na));
    }

    #[test]
    fn different_serials_spread_out() {
        let nb = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let na = nb + Duration::days(90);
        let moments: std::collections::HashSet<_> = (0u8..32)
            .map(|i| renewal_window(&[i, 7, 9], nb, na).renew_at)
            .collect();
        assert!(
            moments.len() > 28,
            "serial-derived moments should rarely collide"
        );
    }
}
