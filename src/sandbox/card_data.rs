//! Card data the sandbox never stores: PAN and CVV are derived on demand from
//! the card id with an HMAC key kept in a file of the sandbox directory
//! (created once, mode 0600). Also derives the deterministic deposit addresses.

use std::{io::Write, path::Path};

use hmac::{Hmac, KeyInit, Mac};
use pelago_storage::Currency;
use sha2::Sha256;

pub struct CardDataKey([u8; 32]);

impl CardDataKey {
    /// Reads the key at `path`, creating it with fresh random bytes on first start.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(|_| invalid_key_file())?;
                let key: [u8; 32] = bytes.try_into().map_err(|_| invalid_key_file())?;
                Ok(Self(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path)?;
                file.write_all(hex::encode(key).as_bytes())?;
                file.sync_all()?;
                Ok(Self(key))
            }
            Err(e) => Err(e),
        }
    }

    fn prf(&self, label: &str, input: &str) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(label.as_bytes());
        mac.update(b"\0");
        mac.update(input.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A 16-digit, Luhn-valid PAN starting with the 6-digit `bin`.
    pub fn pan(&self, bin: &str, channel_card_id: &str) -> String {
        let bytes = self.prf("pan", channel_card_id);
        let mut digits: String = bin.chars().take(6).collect();
        digits.extend(bytes.iter().take(15 - digits.len()).map(|b| char::from(b'0' + b % 10)));
        let check = luhn_check_digit(&digits);
        digits.push(char::from(b'0' + check));
        digits
    }

    pub fn cvv(&self, channel_card_id: &str) -> String {
        self.prf("cvv", channel_card_id).iter().take(3).map(|b| char::from(b'0' + b % 10)).collect()
    }

    /// `T` + 33 hex characters, the same for the same account, currency and network.
    pub fn deposit_address(&self, merchant_id: &str, currency: Currency, network: &str) -> String {
        let input = format!("{merchant_id}\0{}\0{network}", currency.code());
        let hex = hex::encode(self.prf("deposit-address", &input));
        format!("T{}", &hex[..33])
    }
}

fn invalid_key_file() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "sandbox card-data key file is not 32 hex-encoded bytes",
    )
}

/// The digit that makes `partial` + digit pass the Luhn check.
pub fn luhn_check_digit(partial: &str) -> u8 {
    let sum: u32 = partial
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Whether a digit string passes the Luhn check.
pub fn luhn_valid(number: &str) -> bool {
    match number.split_at_checked(number.len().saturating_sub(1)) {
        Some((head, last)) if !head.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            u32::from(luhn_check_digit(head)) == u32::from(last.as_bytes()[0] - b'0')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_numbers() {
        assert!(luhn_valid("4242424242424242"));
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("4242424242424241"));
        assert!(!luhn_valid("42a2"));
        assert!(!luhn_valid(""));
    }

    #[test]
    fn derived_pan_is_stable_luhn_valid_and_keeps_the_bin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let key = CardDataKey::load_or_create(&path).unwrap();
        let pan = key.pan("424242", "cc_1");
        assert_eq!(pan.len(), 16);
        assert!(pan.starts_with("424242"));
        assert!(luhn_valid(&pan));
        assert_ne!(pan, key.pan("424242", "cc_2"));
        assert_eq!(key.cvv("cc_1").len(), 3);
        let again = CardDataKey::load_or_create(&path).unwrap();
        assert_eq!(again.pan("424242", "cc_1"), pan, "same key after a restart");
        let address = key.deposit_address("gm_1", Currency::USD, "TRON");
        assert_eq!(address, again.deposit_address("gm_1", Currency::USD, "TRON"));
        assert_ne!(address, key.deposit_address("gm_1", Currency::EUR, "TRON"));
        assert!(address.starts_with('T') && address.len() == 34);
    }
}
