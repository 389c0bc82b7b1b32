/**
 * `AuditLog.queue` (the broker's audit path): queued records reach the file
 * together within QUEUE_FLUSH_MS, in order; `close` writes what is still
 * queued.
 */

import { assertEquals, assertThrows } from "../testing/assert.ts";
import { join } from "node:path";
import { withTempDir } from "../testing/fixtures.ts";
import { AuditLog, QUEUE_FLUSH_MS } from "../src/audit/log.ts";
import { AuditFileError } from "../src/agent/errors.ts";

const lines = (path: string) => Deno.readTextFileSync(path).split("\n").filter((l) => l !== "");

Deno.test("audit queue: written together within the flush interval, in order; close flushes; nothing after close", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "audit.jsonl");
    const audit = await AuditLog.open<{ n: number }>(path);
    const errors: Error[] = [];
    try {
      for (let n = 0; n < 3; n++) audit.queue({ n }, (e) => errors.push(e));
      assertEquals(lines(path), [], "nothing written at once");
      await new Promise((resolve) => setTimeout(resolve, QUEUE_FLUSH_MS * 5));
      assertEquals(lines(path).map((l) => JSON.parse(l).n), [0, 1, 2]);
      audit.queue({ n: 3 }, (e) => errors.push(e));
    } finally {
      audit.close();
    }
    assertEquals(lines(path).map((l) => JSON.parse(l).n), [0, 1, 2, 3], "close wrote the last one");
    assertThrows(() => audit.queue({ n: 4 }, () => {}), AuditFileError);
    assertEquals(errors, []);
  });
});
