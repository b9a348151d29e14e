//! The hasher alone: how many password hashes per second this machine does
//! with the server's hashing parameters, on as many threads as it has CPUs.
//! Login and registration rates are read against this number, since each
//! costs one hash (or verification) and little else.

use std::time::{Duration, Instant};

use latchkey_hash::{HasherConfig, hash_password, verify_password};

/// `argon2:m=65536,t=2,p=2` (memory in KiB) or `bcrypt:12`.
pub fn parse(spec: &str) -> Result<HasherConfig, String> {
    let (kind, params) = spec.split_once(':').unwrap_or((spec, ""));
    match kind {
        "bcrypt" => {
            let cost = if params.is_empty() {
                12
            } else {
                params.parse().map_err(|_| format!("bad bcrypt cost `{params}`"))?
            };
            Ok(HasherConfig::Bcrypt { cost })
        }
        "argon2" => {
            let HasherConfig::Argon2 {
                mut memory_kib,
                mut iterations,
                mut parallelism,
                salt_length,
                key_length,
            } = HasherConfig::argon2_default()
            else {
                unreachable!("argon2_default is argon2")
            };
            for pair in params.split(',').filter(|p| !p.is_empty()) {
                let (k, v) =
                    pair.split_once('=').ok_or_else(|| format!("expected key=value, got `{pair}`"))?;
                let v: u32 = v.parse().map_err(|_| format!("bad number in `{pair}`"))?;
                match k {
                    "m" => memory_kib = v,
                    "t" => iterations = v,
                    "p" => parallelism = v,
                    _ => return Err(format!("unknown argon2 parameter `{k}` (m, t, p)")),
                }
            }
            Ok(HasherConfig::Argon2 { memory_kib, iterations, parallelism, salt_length, key_length })
        }
        _ => Err(format!("unknown hasher `{kind}`: use argon2:m=KiB,t=N,p=N or bcrypt:COST")),
    }
}

/// Verifications per second over `duration` on `threads` threads (a login
/// verifies; a registration hashes, which costs the same).
pub fn measure(config: &HasherConfig, threads: usize, duration: Duration) -> f64 {
    let encoded = hash_password(b"latchkey bench password", config).expect("the hasher spec is valid");
    let start = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let encoded = &encoded;
                scope.spawn(move || {
                    let mut n = 0;
                    while start.elapsed() < duration {
                        let _ = verify_password(b"latchkey bench password", encoded);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    counts.iter().sum::<u64>() as f64 / start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_measure() {
        assert_eq!(parse("bcrypt:4").unwrap(), HasherConfig::Bcrypt { cost: 4 });
        assert!(matches!(
            parse("argon2:m=1024,t=1,p=1").unwrap(),
            HasherConfig::Argon2 { memory_kib: 1024, .. }
        ));
        assert!(parse("md5").is_err() && parse("argon2:x=1").is_err());
        assert!(measure(&HasherConfig::Bcrypt { cost: 4 }, 1, Duration::from_millis(50)) > 0.0);
    }
}
