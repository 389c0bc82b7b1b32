/**
 * Entry module of a broker thread (a `Worker`): see `threads.ts`.
 *
 * @module
 */

import { runBrokerThread } from "./threads.ts";

runBrokerThread(self as unknown as Parameters<typeof runBrokerThread>[0]);
