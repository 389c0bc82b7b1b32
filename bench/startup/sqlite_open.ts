/**
 * A reference for bench:cli: the SQLite driver imported and an in-memory database opened, as
 * the store opens one (src/store/sqlite.ts names the driver's native addon directly). Opening
 * loads the addon (a shared library with its C++ runtime), which importing the driver does not:
 * the difference to the driver-only script is the stack's own cost of the first open.
 *
 * @module
 */
import { SqliteDatabase } from "../../src/store/sqlite.ts";

new SqliteDatabase(":memory:").close();
