#!/usr/bin/env bash
# Build the SQLCipher interoperability peer used by the tests.
#
#   scripts/sqlcipher-peer/build.sh [OUTDIR]
#
# OUTDIR defaults to <repo>/.cache/sqlcipher-peer (gitignored). The binary is
# written to OUTDIR/sqlcipher-peer and its path printed on the last line of
# stdout. Idempotent: nothing is rebuilt while the peer source, this script,
# the SQLCipher version and the compiler are unchanged.
#
# Source: the npm package @commapp/sqlcipher-amalgamation (SQLCipher 4.5.5,
# SQLite 3.42.0 amalgamation), fetched once with `npm pack` into
# OUTDIR/src and checked against a pinned SHA-256. Crypto: OpenSSL libcrypto.
#
# Needs: gcc, libc6-dev, libssl-dev, npm (only for the first fetch), tar,
# sha256sum. On Debian 12: apt-get install -y gcc libc6-dev libssl-dev
set -euo pipefail

SQLCIPHER_VERSION="4.5.5"
NPM_SPEC="@commapp/sqlcipher-amalgamation@${SQLCIPHER_VERSION}"
TARBALL="commapp-sqlcipher-amalgamation-${SQLCIPHER_VERSION}.tgz"
TARBALL_SHA256="5e49e540eb0274d8ba87c1ce680a1143971a2528e0783044a08b39c97ea07d13"

# Compile-time options for the amalgamation. SQLCipher 4.5.x only compiles its
# codec when SQLITE_HAS_CODEC is defined (4.6+ switched to SQLITE_EXTRA_INIT);
# SQLITE_TEMP_STORE=2 keeps temporary tables in memory, as SQLCipher advises,
# so that no plaintext temporary files are written.
SQLITE_DEFINES=(
  -DSQLITE_HAS_CODEC
  -DSQLCIPHER_CRYPTO_OPENSSL
  -DSQLITE_TEMP_STORE=2
  -DSQLITE_THREADSAFE=0
  -DSQLITE_OMIT_LOAD_EXTENSION
  -DSQLITE_DQS=0
)
# -w on the amalgamation only: it uses HMAC_CTX APIs deprecated in OpenSSL 3.
SQLITE_CFLAGS=(-O1 -w)
PEER_CFLAGS=(-O1 -std=c99 -Wall -Wextra -Werror)
LIBS=(-lcrypto -lm)

die() {
  echo "sqlcipher-peer build: ERROR: $*" >&2
  exit 1
}
log() { echo "sqlcipher-peer build: $*" >&2; }

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd)"
OUTDIR="${1:-$REPO_ROOT/.cache/sqlcipher-peer}"
CC="${CC:-gcc}"

# --- prerequisites -----------------------------------------------------------
command -v "$CC" >/dev/null 2>&1 ||
  die "C compiler '$CC' not found. On Debian/Ubuntu: apt-get install -y gcc libc6-dev libssl-dev"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found (coreutils)"
command -v tar >/dev/null 2>&1 || die "tar not found"

mkdir -p -- "$OUTDIR"
OUTDIR="$(cd -- "$OUTDIR" && pwd)"
BIN="$OUTDIR/sqlcipher-peer"

# Serialise concurrent builds into the same OUTDIR (e.g. parallel test runs).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$OUTDIR/.build.lock"
  flock 9
fi

CC_VERSION="$("$CC" --version 2>/dev/null | head -n1)"
hash_of() { sha256sum | cut -d' ' -f1; }

SQLITE_STAMP="$(printf '%s\n' "$TARBALL_SHA256" "$CC_VERSION" "${SQLITE_DEFINES[*]}" \
  "${SQLITE_CFLAGS[*]}" | hash_of)"
PEER_STAMP="$({
  cat -- "$SCRIPT_DIR/peer.c" "$SCRIPT_DIR/build.sh"
  printf '%s\n' "$SQLCIPHER_VERSION" "$SQLITE_STAMP"
} | hash_of)"

if [[ -x "$BIN" && -f "$BIN.stamp" && "$(cat -- "$BIN.stamp")" == "$PEER_STAMP" ]]; then
  log "up to date: $BIN"
  echo "$BIN"
  exit 0
fi

# Check the OpenSSL headers and libcrypto before the long compile.
probe_dir="$(mktemp -d)"
trap 'rm -rf -- "$probe_dir"' EXIT
cat >"$probe_dir/probe.c" <<'EOF'
#include <openssl/evp.h>
#include <openssl/rand.h>
int main(void) { return EVP_sha512() == 0; }
EOF
if ! "$CC" "$probe_dir/probe.c" -o "$probe_dir/probe" -lcrypto >"$probe_dir/log" 2>&1; then
  cat "$probe_dir/log" >&2
  die "cannot compile and link against OpenSSL libcrypto (headers <openssl/evp.h> or" \
    "libcrypto missing). On Debian/Ubuntu: apt-get install -y libssl-dev libc6-dev"
fi

# --- source ------------------------------------------------------------------
SRC_DIR="$OUTDIR/src"
AMALG="$SRC_DIR/package/src"
mkdir -p -- "$SRC_DIR"
if [[ ! -f "$SRC_DIR/$TARBALL" ]] ||
  [[ "$(sha256sum <"$SRC_DIR/$TARBALL" | cut -d' ' -f1)" != "$TARBALL_SHA256" ]]; then
  command -v npm >/dev/null 2>&1 ||
    die "npm not found: it is needed once to fetch $NPM_SPEC (or place $TARBALL in $SRC_DIR)"
  log "fetching $NPM_SPEC with npm pack"
  rm -f -- "$SRC_DIR/$TARBALL"
  (cd -- "$SRC_DIR" && npm pack --silent --ignore-scripts "$NPM_SPEC" >/dev/null) ||
    die "npm pack $NPM_SPEC failed"
  [[ -f "$SRC_DIR/$TARBALL" ]] || die "npm pack did not produce $TARBALL"
  got="$(sha256sum <"$SRC_DIR/$TARBALL" | cut -d' ' -f1)"
  if [[ "$got" != "$TARBALL_SHA256" ]]; then
    rm -f -- "$SRC_DIR/$TARBALL"
    die "$TARBALL has SHA-256 $got, expected $TARBALL_SHA256"
  fi
  rm -rf -- "$SRC_DIR/package"
fi
if [[ ! -f "$AMALG/sqlite3.c" || ! -f "$AMALG/sqlite3.h" ]]; then
  rm -rf -- "$SRC_DIR/package"
  tar -xzf "$SRC_DIR/$TARBALL" -C "$SRC_DIR" package/src/sqlite3.c package/src/sqlite3.h ||
    die "cannot unpack $TARBALL"
fi
grep -q "^#define CIPHER_VERSION_NUMBER ${SQLCIPHER_VERSION}\$" "$AMALG/sqlite3.c" ||
  die "$AMALG/sqlite3.c is not SQLCipher $SQLCIPHER_VERSION"

# --- compile -----------------------------------------------------------------
OBJ="$OUTDIR/sqlite3.o"
if [[ ! -f "$OBJ" || ! -f "$OBJ.stamp" || "$(cat -- "$OBJ.stamp")" != "$SQLITE_STAMP" ]]; then
  log "compiling SQLCipher $SQLCIPHER_VERSION amalgamation (about 10-30 s)"
  rm -f -- "$OBJ" "$OBJ.stamp"
  "$CC" "${SQLITE_CFLAGS[@]}" "${SQLITE_DEFINES[@]}" -I"$AMALG" \
    -c "$AMALG/sqlite3.c" -o "$OBJ.tmp" || die "compiling sqlite3.c failed"
  mv -f -- "$OBJ.tmp" "$OBJ"
  echo "$SQLITE_STAMP" >"$OBJ.stamp"
fi

log "compiling and linking peer.c"
rm -f -- "$BIN.stamp"
"$CC" "${PEER_CFLAGS[@]}" "${SQLITE_DEFINES[@]}" -I"$AMALG" \
  "$SCRIPT_DIR/peer.c" "$OBJ" -o "$BIN.tmp" "${LIBS[@]}" || die "building the peer failed"
mv -f -- "$BIN.tmp" "$BIN"
echo "$PEER_STAMP" >"$BIN.stamp"
log "built $BIN"
echo "$BIN"
