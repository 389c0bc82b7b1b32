/**
 * Spending `max_requests` from leases (`src/tokens/uses.ts`) against fake
 * leasers that keep the store's contract exactly: exact counts, adaptive
 * lease sizes, release on shutdown, failures, and two real worker isolates
 * spending one budget.
 */

import { assert, assertEquals, assertThrows } from "../testing/assert.ts";
import { MemoryUseLeaser, runWorkers, SharedUseLeaser } from "../testing/token_policy.ts";
import { LEASE_SHARE, MAX_LEASE, UseCounter, type UseLeaser } from "../src/tokens/uses.ts";
import { mintToken } from "../src/tokens/format.ts";

/** A clock that moves only when told. */
function manualClock(): { now: () => number; advance(ms: number): void } {
  let t = 0;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

Deno.test("uses: exactly max_requests forwarded, then refused; the store's count is the truth", () => {
  const token = mintToken();
  const leaser = new MemoryUseLeaser({ [token]: 10 });
  const uses = new UseCounter(leaser);
  const answers = Array.from({ length: 15 }, () => uses.spend(token, 10));
  assertEquals(answers, [...Array(10).fill(true), ...Array(5).fill(false)]);
  assertEquals(leaser.used(token), 10);
  assertEquals(uses.held(token), 0);
  // An unknown token (no uses at all) is refused and leaves nothing behind.
  assertEquals(uses.spend(mintToken(), 10), false);
});

Deno.test("uses: a busy token's leases double up to maxLease; each lease is one store call", () => {
  const token = mintToken();
  const leaser = new MemoryUseLeaser({ [token]: 100_000 });
  const clock = manualClock();
  const uses = new UseCounter(leaser, { now: clock.now });
  for (let i = 0; i < 1000; i++) {
    assert(uses.spend(token, 100_000));
    clock.advance(1); // 1000 requests a second
  }
  const wants = leaser.leases.map(([, want]) => want);
  assertEquals(wants.slice(0, 8), [1, 2, 4, 8, 16, 32, 64, 64]);
  assert(wants.every((want) => want <= MAX_LEASE));
  // 1000 requests, 21 leases (1+2+…+32 = 63, then 64 at a time), not 1000 commits.
  assertEquals(wants.length, 6 + Math.ceil((1000 - 63) / 64));
  assertEquals(uses.held(token), leaser.used(token) - 1000);
});

Deno.test("uses: a token used rarely leases one at a time; a lease never exceeds max/16 or maxLease", () => {
  const rare = mintToken();
  const small = mintToken();
  const capped = mintToken();
  const leaser = new MemoryUseLeaser({ [rare]: 100_000, [small]: 100, [capped]: 100_000 });
  const clock = manualClock();
  const uses = new UseCounter(leaser, { now: clock.now, maxLease: 8 });
  for (let i = 0; i < 20; i++) {
    assert(uses.spend(rare, 100_000));
    clock.advance(5000); // one request every 5 s
  }
  for (let i = 0; i < 100; i++) assert(uses.spend(small, 100));
  assertEquals(uses.spend(small, 100), false);
  for (let i = 0; i < 100; i++) assert(uses.spend(capped, 100_000));
  const wants = (token: string) => leaser.leases.filter(([t]) => t === token).map(([, w]) => w);
  assertEquals(new Set(wants(rare)), new Set([1]));
  assertEquals(Math.max(...wants(small)), Math.floor(100 / LEASE_SHARE));
  assertEquals(Math.max(...wants(capped)), 8);
  // A busy token that slows down gets smaller leases again.
  const slowing = wants(capped).length;
  while (uses.held(capped) > 0) assert(uses.spend(capped, 100_000)); // what it holds: no lease
  assertEquals(wants(capped).length, slowing);
  clock.advance(5000);
  assert(uses.spend(capped, 100_000));
  assertEquals(wants(capped).slice(slowing), [4]);
});

Deno.test("uses: releaseAll gives back every unspent use; the next spend leases again", () => {
  const a = mintToken();
  const b = mintToken();
  const leaser = new MemoryUseLeaser({ [a]: 1000, [b]: 1000 });
  const uses = new UseCounter(leaser, { now: () => 0 });
  for (let i = 0; i < 10; i++) assert(uses.spend(a, 1000));
  for (let i = 0; i < 4; i++) assert(uses.spend(b, 1000)); // leases 1, 2, 4: 3 held
  const heldA = uses.held(a);
  const heldB = uses.held(b);
  assert(heldA > 0 && heldB > 0, `held ${heldA}, ${heldB}`);
  uses.releaseAll();
  assertEquals(uses.held(a), 0);
  assertEquals(leaser.used(a), 10);
  assertEquals(leaser.used(b), 4);
  assertEquals(new Set(leaser.releases), new Set([[a, heldA], [b, heldB]]));
  assert(uses.spend(a, 1000));
  assertEquals(leaser.used(a), 11 + uses.held(a));
});

Deno.test("uses: two counters in one process spend one budget exactly, interleaved", () => {
  const token = mintToken();
  const leaser = new MemoryUseLeaser({ [token]: 100 });
  const one = new UseCounter(leaser, { now: () => 0 });
  const two = new UseCounter(leaser, { now: () => 0 });
  let forwarded = 0;
  let refusedOne = false;
  let refusedTwo = false;
  while (!refusedOne || !refusedTwo) {
    if (!refusedOne) one.spend(token, 100) ? forwarded++ : (refusedOne = true);
    if (!refusedTwo) two.spend(token, 100) ? forwarded++ : (refusedTwo = true);
  }
  assertEquals(forwarded, 100);
  assertEquals(leaser.used(token), 100);
});

Deno.test("uses: a leaser that throws spends nothing; releaseAll releases the rest, then throws", () => {
  const [token, other, third] = [mintToken(), mintToken(), mintToken()];
  const inner = new MemoryUseLeaser({ [token]: 100, [other]: 100, [third]: 100 });
  let failing = false;
  const leaser: UseLeaser = {
    leaseUses: (t, want) => {
      if (failing) throw new Error("database is locked");
      return inner.leaseUses(t, want);
    },
    releaseUses: (t, unused) => {
      if (failing && t === token) throw new Error("database is locked");
      inner.releaseUses(t, unused);
    },
  };
  const uses = new UseCounter(leaser, { now: () => 0 });
  for (let i = 0; i < 4; i++) assert(uses.spend(token, 100)); // leases 1, 2, 4: 3 held
  for (let i = 0; i < 2; i++) assert(uses.spend(other, 100)); // leases 1, 2: 1 held
  assert(uses.spend(third, 100)); // lease 1: none held
  failing = true;
  assert(uses.spend(token, 100)); // from what it holds: no store call
  assertThrows(() => uses.spend(third, 100), Error);
  assertEquals(inner.used(third), 1);
  assertEquals(uses.held(third), 0);
  assertThrows(() => uses.releaseAll(), Error);
  assertEquals(inner.used(other), 2); // the other token's unspent use went back
  assertEquals(inner.used(token), 7); // its 2 unspent ones are lost, never spent twice
  assertEquals(uses.held(token), 0);
  assertEquals(uses.held(other), 0);
});

Deno.test("uses: two worker isolates spending 100 uses forward exactly 100 between them", async () => {
  for (const max of [100, 1000, 7]) {
    const leaser = new SharedUseLeaser({ max });
    const forwarded = await runWorkers([
      { kind: "uses", buffer: leaser.buffer, maxRequests: max },
      { kind: "uses", buffer: leaser.buffer, maxRequests: max },
    ]);
    assertEquals(forwarded[0] + forwarded[1], max, `max ${max}: ${forwarded}`);
    assertEquals(leaser.used, max);
    assert(leaser.leases < max || max < 16, `max ${max}: ${leaser.leases} leases`);
  }
});
