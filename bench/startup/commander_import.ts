/**
 * A reference for bench:cli: a program that only imports commander, which parses every command
 * line but the `--version` / piped `--help` shortcuts.
 *
 * @module
 */
import "commander";
