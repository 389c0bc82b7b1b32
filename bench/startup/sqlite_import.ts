/**
 * A floor for bench:cli: a program that only imports the SQLite driver, which every command that
 * opens the vault must load (Deno's Node compatibility layer, the driver's CommonJS wrapper).
 *
 * @module
 */
import "better-sqlite3-multiple-ciphers";
