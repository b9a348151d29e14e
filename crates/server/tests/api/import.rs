//! `latchkey identities import`: a Kratos export, with every hash format
//! Kratos stores, imported by the real binary into a running server's
//! database; the people then sign in with their old passwords.

use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{Backend, login, quickstart_schema, spawn_app};

const PASSWORD: &str = "correct horse battery staple";

/// The same password in each format Kratos may hold (made with Python's
/// bcrypt, argon2-cffi and hashlib, as latchkey-hash's own tests are).
const HASHES: [&str; 5] = [
    "$2b$04$iiCigTe6scRSMso87E.XEu2jZcbqkBbhmBFPE47PiBZRdeOAlCuo.",
    "$argon2id$v=19$m=1024,t=2,p=2$Fzm0ZNvaEsdZxbM033rnmg$oQwabV8CGV0rstOj9EJhfOPDTu+48npParjw6tIQhYM",
    "$pbkdf2-sha256$i=2000,l=32$oZrYRWlI1PZsdCDDdRvf4g$mQQCYumtVLHbdt0cyvO/dPlFfQjCwVUH0k44MoA1090",
    "$scrypt$ln=1024,r=8,p=1$SPuPrXp4DWJjVN2++dztvsFsZXTTeYjUDi0fd7VYz6Y=$QlJJAM9evncK2N8B+6A9mhHYR5WUfa85IBDwUAnFu4M=",
    "$argon2i$v=19$m=512,t=3,p=1$qHh5etwHAZtmyU7S$zcrlKKKeG65vnQYrJga+IChtGM/ezYil",
];

/// One identity as Kratos's admin API exports it with `include_credential=password`.
fn exported(n: usize, hash: &str, verified: bool) -> Value {
    let email = format!("moved-{n}@example.com");
    json!({
        "id": uuid::Uuid::new_v4(),
        "schema_id": "default",
        "schema_url": "http://127.0.0.1:4433/schemas/ZGVmYXVsdA",
        "state": "active",
        "state_changed_at": "2024-03-01T10:00:00Z",
        "traits": { "email": email },
        "verifiable_addresses": [{
            "id": uuid::Uuid::new_v4(), "value": email, "verified": verified, "via": "email",
            "status": if verified { "completed" } else { "pending" },
            "verified_at": if verified { json!("2024-03-02T10:00:00Z") } else { Value::Null },
            "created_at": "2024-03-01T10:00:00Z", "updated_at": "2024-03-01T10:00:00Z"
        }],
        "recovery_addresses": [{ "id": uuid::Uuid::new_v4(), "value": email, "via": "email" }],
        "metadata_public": { "plan": "pro" },
        "metadata_admin": null,
        "credentials": {
            "password": {
                "type": "password", "identifiers": [email], "version": 0,
                "config": { "hashed_password": hash },
                "created_at": "2024-03-01T10:00:00Z", "updated_at": "2024-03-01T10:00:00Z"
            }
        },
        "created_at": "2024-03-01T10:00:00Z",
        "updated_at": "2024-03-01T10:00:00Z",
        "organization_id": null
    })
}

fn import(dsn: &str, file: &std::path::Path) -> (bool, String) {
    let dir = file.parent().unwrap();
    let config = dir.join("import.yml");
    std::fs::write(
        &config,
        format!(
            "identity:\n  default_schema_id: default\n  schemas:\n    - id: default\n      url: file://{}\n",
            quickstart_schema().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["identities", "import"])
        .arg(file)
        .arg("-c")
        .arg(&config)
        .env("DSN", dsn)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

async fn a_kratos_export_moves_over_with_its_passwords(backend: Backend) {
    let app = spawn_app(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let mut identities: Vec<Value> =
        HASHES.iter().enumerate().map(|(n, hash)| exported(n, hash, n % 2 == 0)).collect();
    // One with a TOTP credential too, which cannot move; its password does.
    let mut with_totp = exported(90, HASHES[0], true);
    with_totp["credentials"]["totp"] =
        json!({ "type": "totp", "config": { "totp_url": "otpauth://totp/x" } });
    identities.push(with_totp);
    let file = dir.path().join("export.json");
    std::fs::write(&file, serde_json::to_string_pretty(&identities).unwrap()).unwrap();

    let (ok, out) = import(&app.dsn, &file);
    assert!(ok, "{out}");
    assert!(out.contains("imported 6, skipped 0 (already there), failed 0"), "{out}");
    assert!(out.contains("1 identities had `totp` credentials"), "{out}");

    for (n, identity) in identities.iter().enumerate().take(HASHES.len()) {
        let email = identity["traits"]["email"].as_str().unwrap();
        login(&app, email, PASSWORD).await.unwrap_or_else(|e| panic!("{}: {e}", HASHES[n]));
        let id = identity["id"].as_str().unwrap();
        let stored: Value = app.get_json(&app.admin_path(&format!("/admin/identities/{id}"))).await;
        assert_eq!(stored["verifiable_addresses"][0]["verified"], n % 2 == 0, "{stored}");
        assert_eq!(stored["metadata_public"], json!({ "plan": "pro" }));
        assert_eq!(stored["created_at"], "2024-03-01T10:00:00Z");
    }
    assert!(login(&app, "moved-0@example.com", "not the password").await.is_err());

    // Again, as JSON lines, with one new identity, one whose address is
    // taken by another id, and one that is no identity at all.
    let mut lines: Vec<String> = identities.iter().map(|i| i.to_string()).collect();
    lines.push(exported(50, HASHES[2], true).to_string());
    lines.push(exported(0, HASHES[0], true).to_string());
    lines.push(json!({ "traits": {} }).to_string());
    let jsonl = dir.path().join("export.jsonl");
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    let (ok, out) = import(&app.dsn, &jsonl);
    assert!(!ok, "failures make the command fail: {out}");
    assert!(out.contains("imported 1, skipped 6 (already there), failed 2"), "{out}");
    assert!(out.contains("entry 8") && out.contains("already has one of its identifiers"), "{out}");
    assert!(out.contains("entry 9") && out.contains("missing field `id`"), "{out}");
    login(&app, "moved-50@example.com", PASSWORD).await.unwrap();

    // An unknown hash format is named, and nothing is written for it.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, json!([exported(60, "$md5$abc", true)]).to_string()).unwrap();
    let (ok, out) = import(&app.dsn, &bad);
    assert!(!ok && out.contains("does not match any known hash format"), "{out}");
    assert!(login(&app, "moved-60@example.com", PASSWORD).await.is_err());
}

crate::on_both_databases!(a_kratos_export_moves_over_with_its_passwords);
