#!/usr/bin/env bash
# The import rate: a Kratos export of N identities (default 10,000) with
# every hash format Kratos stores, mixed, imported by the release binary
# into a new SQLite file and a new PostgreSQL database; prints each run's
# summary line (identities per second).
#   scripts/import-bench.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
cargo build --release -p latchkey --bin latchkey >&2
python3 - "$n" >"$dir/export.jsonl" <<'PY'
import json, sys, uuid
# One password ("correct horse battery staple") in each format Kratos may hold.
hashes = [
    "$2b$04$iiCigTe6scRSMso87E.XEu2jZcbqkBbhmBFPE47PiBZRdeOAlCuo.",
    "$argon2id$v=19$m=1024,t=2,p=2$Fzm0ZNvaEsdZxbM033rnmg$oQwabV8CGV0rstOj9EJhfOPDTu+48npParjw6tIQhYM",
    "$pbkdf2-sha256$i=2000,l=32$oZrYRWlI1PZsdCDDdRvf4g$mQQCYumtVLHbdt0cyvO/dPlFfQjCwVUH0k44MoA1090",
    "$scrypt$ln=1024,r=8,p=1$SPuPrXp4DWJjVN2++dztvsFsZXTTeYjUDi0fd7VYz6Y=$QlJJAM9evncK2N8B+6A9mhHYR5WUfa85IBDwUAnFu4M=",
]
for i in range(int(sys.argv[1])):
    email = f"import-{i}@example.com"
    verified = i % 3 == 0
    print(json.dumps({
        "id": str(uuid.uuid4()), "schema_id": "default", "state": "active",
        "traits": {"email": email},
        "verifiable_addresses": [{"value": email, "verified": verified, "via": "email",
                                  "status": "completed" if verified else "pending"}],
        "credentials": {"password": {"type": "password", "identifiers": [email],
                                     "config": {"hashed_password": hashes[i % len(hashes)]}}},
        "created_at": "2024-03-01T10:00:00Z",
    }))
PY
cat >"$dir/import.yml" <<YML
identity:
  default_schema_id: default
  schemas:
    - id: default
      url: file://$PWD/contrib/quickstart/identity.schema.json
YML
echo "sqlite:"
DSN="sqlite://$dir/import.db" target/release/latchkey identities import "$dir/export.jsonl" -c "$dir/import.yml" | head -1
pg_base="$(scripts/postgres.sh)"
pg_base="${pg_base%/*}"
db="latchkey_import_$$"
psql "$pg_base/postgres" -qc "CREATE DATABASE $db" >/dev/null
DSN="$pg_base/$db" target/release/latchkey migrate sql -e --yes >/dev/null
echo "postgres:"
DSN="$pg_base/$db" target/release/latchkey identities import "$dir/export.jsonl" -c "$dir/import.yml" | head -1
psql "$pg_base/postgres" -qc "DROP DATABASE $db" >/dev/null
