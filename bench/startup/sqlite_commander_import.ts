/**
 * A floor for bench:cli: a program that only imports what `vault cred list` cannot run without,
 * the SQLite driver and commander (through its typings wrapper, as src/cli does).
 *
 * @module
 */
import "better-sqlite3-multiple-ciphers";
import "@commander-js/extra-typings";
