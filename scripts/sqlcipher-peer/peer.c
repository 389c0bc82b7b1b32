/*
 * sqlcipher-peer: a minimal command-line peer built against a real SQLCipher
 * amalgamation, used by the test-suite to prove on-disk interoperability.
 *
 * Usage:   sqlcipher-peer <db-path> <passphrase|raw>
 *
 * Standard input:
 *   line 1     the key. In "passphrase" mode the whole line (without the
 *              terminating '\n') is the passphrase, byte for byte. In "raw"
 *              mode the line must be "raw:" followed by exactly 64 hex digits
 *              (a 256-bit raw key; SQLCipher derives no key from it).
 *   the rest   an SQL script, executed statement by statement.
 *
 * The key never appears on the command line, in the output or in any error
 * message. Right after opening, the peer runs `PRAGMA key` as the first
 * statement and then reads sqlite_master, so a wrong key fails before the
 * script runs ("file is not a database"), even when the script would not
 * otherwise touch the file.
 *
 * Standard output: every row of every statement, in order, as one JSON
 * object per line, keyed by column name. INTEGER and REAL values are JSON
 * numbers (integers beyond +/-(2^53-1) as {"$int":"<decimal>"} so that no
 * precision is lost; infinite reals as 1e999 / -1e999), TEXT is a JSON
 * string, NULL is null and BLOB is {"$hex":"<lowercase hex>"}.
 *
 * Exit status: 0 on success; 1 on any database error (message on stderr,
 * together with the 1-based index of the failing statement; the SQL text is
 * never echoed); 2 on a usage error or malformed key line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite3.h"

#define PROG "sqlcipher-peer"
#define RAW_PREFIX "raw:"
#define RAW_HEX_LEN 64

/* Overwrite memory in a way the optimiser may not remove. */
static void wipe(void *p, size_t n) {
  volatile unsigned char *v = (volatile unsigned char *)p;
  while (n--) *v++ = 0;
}

static void fail_usage(const char *msg) {
  fprintf(stderr, "%s: %s\n", PROG, msg);
  fprintf(stderr, "usage: %s <db-path> <passphrase|raw>  (key line, then SQL, on stdin)\n", PROG);
  exit(2);
}

/* Read all of standard input into a NUL-terminated heap buffer. */
static char *read_stdin(size_t *out_len) {
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  if (!buf) return NULL;
  for (;;) {
    if (cap - len < 2) {
      size_t ncap = cap * 2;
      char *nbuf = malloc(ncap);
      if (!nbuf) {
        wipe(buf, cap);
        free(buf);
        return NULL;
      }
      memcpy(nbuf, buf, len);
      wipe(buf, cap); /* may hold the key: do not leave copies behind */
      free(buf);
      buf = nbuf;
      cap = ncap;
    }
    size_t n = fread(buf + len, 1, cap - len - 1, stdin);
    len += n;
    if (n == 0) break;
  }
  if (ferror(stdin)) {
    wipe(buf, cap);
    free(buf);
    return NULL;
  }
  buf[len] = '\0';
  *out_len = len;
  return buf;
}

static int is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static void json_string(FILE *out, const unsigned char *s, int n) {
  static const char digits[] = "0123456789abcdef";
  fputc('"', out);
  for (int i = 0; i < n; i++) {
    unsigned char c = s[i];
    switch (c) {
      case '"': fputs("\\\"", out); break;
      case '\\': fputs("\\\\", out); break;
      case '\n': fputs("\\n", out); break;
      case '\r': fputs("\\r", out); break;
      case '\t': fputs("\\t", out); break;
      case '\b': fputs("\\b", out); break;
      case '\f': fputs("\\f", out); break;
      default:
        if (c < 0x20) {
          fputs("\\u00", out);
          fputc(digits[c >> 4], out);
          fputc(digits[c & 0xf], out);
        } else {
          fputc(c, out); /* UTF-8 passes through unchanged */
        }
    }
  }
  fputc('"', out);
}

static void json_value(FILE *out, sqlite3_stmt *st, int col) {
  static const char digits[] = "0123456789abcdef";
  switch (sqlite3_column_type(st, col)) {
    case SQLITE_INTEGER: {
      sqlite3_int64 v = sqlite3_column_int64(st, col);
      const sqlite3_int64 safe = 9007199254740991LL; /* 2^53 - 1 */
      if (v > safe || v < -safe) {
        fprintf(out, "{\"$int\":\"%lld\"}", (long long)v);
      } else {
        fprintf(out, "%lld", (long long)v);
      }
      break;
    }
    case SQLITE_FLOAT: {
      double d = sqlite3_column_double(st, col);
      if (d != d) {
        fputs("null", out); /* SQLite never stores NaN; be defensive */
      } else if (d > 1.7976931348623157e308) {
        fputs("1e999", out);
      } else if (d < -1.7976931348623157e308) {
        fputs("-1e999", out);
      } else {
        fprintf(out, "%.17g", d);
      }
      break;
    }
    case SQLITE_TEXT: {
      const unsigned char *t = sqlite3_column_text(st, col);
      json_string(out, t, sqlite3_column_bytes(st, col));
      break;
    }
    case SQLITE_BLOB: {
      const unsigned char *b = sqlite3_column_blob(st, col);
      int n = sqlite3_column_bytes(st, col);
      fputs("{\"$hex\":\"", out);
      for (int i = 0; i < n; i++) {
        fputc(digits[b[i] >> 4], out);
        fputc(digits[b[i] & 0xf], out);
      }
      fputs("\"}", out);
      break;
    }
    default:
      fputs("null", out);
  }
}

static void json_row(FILE *out, sqlite3_stmt *st) {
  int n = sqlite3_column_count(st);
  fputc('{', out);
  for (int i = 0; i < n; i++) {
    const char *name = sqlite3_column_name(st, i);
    if (!name) name = "";
    if (i) fputc(',', out);
    json_string(out, (const unsigned char *)name, (int)strlen(name));
    fputc(':', out);
    json_value(out, st, i);
  }
  fputs("}\n", out);
}

/* Build and run `PRAGMA key = ...` as the first statement on the handle.
 * Returns SQLITE_OK or an error code. The statement text is wiped. */
static int apply_key(sqlite3 *db, int raw, const char *key, size_t key_len) {
  char *stmt;
  if (raw) {
    /* Validated by the caller: exactly 64 hex digits. */
    stmt = sqlite3_mprintf("PRAGMA key = \"x'%.*s'\";", (int)key_len, key);
  } else {
    /* %Q quotes as an SQL string literal, doubling embedded quotes. */
    stmt = sqlite3_mprintf("PRAGMA key = %Q;", key);
  }
  if (!stmt) return SQLITE_NOMEM;
  int rc = sqlite3_exec(db, stmt, NULL, NULL, NULL);
  wipe(stmt, strlen(stmt));
  sqlite3_free(stmt);
  return rc;
}

static int run_script(sqlite3 *db, const char *sql) {
  const char *tail = sql;
  int index = 0;
  while (tail && *tail) {
    sqlite3_stmt *st = NULL;
    const char *next = NULL;
    int rc = sqlite3_prepare_v2(db, tail, -1, &st, &next);
    if (rc != SQLITE_OK) {
      fprintf(stderr, "%s: statement %d: %s\n", PROG, index + 1, sqlite3_errmsg(db));
      return 1;
    }
    tail = next;
    if (!st) continue; /* whitespace or comment only */
    index++;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) json_row(stdout, st);
    if (rc != SQLITE_DONE) {
      fprintf(stderr, "%s: statement %d: %s\n", PROG, index, sqlite3_errmsg(db));
      sqlite3_finalize(st);
      return 1;
    }
    sqlite3_finalize(st);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3) fail_usage("expected exactly two arguments");
  const char *path = argv[1];
  int raw;
  if (strcmp(argv[2], "passphrase") == 0) {
    raw = 0;
  } else if (strcmp(argv[2], "raw") == 0) {
    raw = 1;
  } else {
    fail_usage("mode must be \"passphrase\" or \"raw\"");
  }

  size_t in_len = 0;
  char *input = read_stdin(&in_len);
  if (!input) {
    fprintf(stderr, "%s: cannot read standard input\n", PROG);
    return 2;
  }

  /* Split off the key line. */
  char *nl = memchr(input, '\n', in_len);
  size_t key_len = nl ? (size_t)(nl - input) : in_len;
  char *key = input;
  const char *sql = nl ? nl + 1 : input + in_len;
  key[key_len] = '\0';

  int status = 0;
  const char *key_error = NULL;
  if (memchr(key, '\0', key_len)) {
    key_error = "key line contains a NUL byte";
  } else if (raw) {
    size_t plen = strlen(RAW_PREFIX);
    if (key_len != plen + RAW_HEX_LEN || memcmp(key, RAW_PREFIX, plen) != 0) {
      key_error = "raw mode expects the key line \"raw:\" followed by 64 hex digits";
    } else {
      for (size_t i = plen; i < key_len; i++) {
        if (!is_hex(key[i])) {
          key_error = "raw key contains a non-hex character";
          break;
        }
      }
      key += plen;
      key_len -= plen;
    }
  } else if (key_len == 0) {
    key_error = "empty passphrase";
  }
  if (key_error) {
    fprintf(stderr, "%s: %s\n", PROG, key_error);
    wipe(input, in_len);
    free(input);
    return 2;
  }

  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "%s: cannot open database: %s\n", PROG,
            db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    status = 1;
    goto done;
  }

  rc = apply_key(db, raw, key, key_len);
  wipe(input, (size_t)(sql - input)); /* the key is no longer needed */
  if (rc != SQLITE_OK) {
    /* Deliberately no sqlite3_errmsg here: it could quote the statement. */
    fprintf(stderr, "%s: PRAGMA key failed (%s)\n", PROG, sqlite3_errstr(rc));
    status = 1;
    goto done;
  }

  /* Prove the key before running anything: reading the schema decrypts
   * page 1, which fails with SQLITE_NOTADB on a wrong key. */
  rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master;", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "%s: cannot read database with the given key: %s\n", PROG,
            sqlite3_errmsg(db));
    status = 1;
    goto done;
  }

  status = run_script(db, sql);

done:
  if (db && sqlite3_close(db) != SQLITE_OK) {
    fprintf(stderr, "%s: close failed: %s\n", PROG, sqlite3_errmsg(db));
    status = 1;
  }
  wipe(input, in_len);
  free(input);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "%s: error writing standard output\n", PROG);
    status = 1;
  }
  return status;
}
