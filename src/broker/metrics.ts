/**
 * The broker's `GET /-/metrics`: Prometheus text exposition (version 0.0.4)
 * of requests by provider and outcome, a request-duration histogram, and
 * the responses streaming right now. Labels are provider names (validated
 * `[a-z0-9._-]`) and outcomes: no token, path or secret ever appears.
 *
 * @module
 */

/** Upper bounds of the duration histogram, in seconds. */
export const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120] as const;

/** The counters of one {@link BrokerMetrics}, as plain data (structured-cloneable). */
export interface MetricsSnapshot {
  /** `[provider NUL outcome, count]`. */
  requests: [string, number][];
  buckets: number[];
  count: number;
  sum: number;
  open: number;
}

/** Counters of one broker isolate (the broker's threads each keep theirs; see {@link renderMetrics}). */
export class BrokerMetrics {
  readonly #requests = new Map<string, Map<string, number>>();
  readonly #buckets = new Array<number>(DURATION_BUCKETS.length).fill(0);
  #count = 0;
  #sum = 0;
  #open = 0;

  /** Counts one finished request. */
  record(provider: string, outcome: string, seconds: number): void {
    // Counted by provider, then outcome: no key string built per request.
    let byOutcome = this.#requests.get(provider);
    if (byOutcome === undefined) this.#requests.set(provider, byOutcome = new Map());
    byOutcome.set(outcome, (byOutcome.get(outcome) ?? 0) + 1);
    this.#count++;
    this.#sum += seconds;
    for (let i = 0; i < DURATION_BUCKETS.length; i++) {
      if (seconds <= DURATION_BUCKETS[i]) this.#buckets[i]++;
    }
  }

  /** A response body started streaming. */
  streamOpened(): void {
    this.#open++;
  }

  /** A response body ended (done, failed or abandoned). */
  streamClosed(): void {
    if (this.#open > 0) this.#open--;
  }

  /** The counters as plain data. */
  snapshot(): MetricsSnapshot {
    return {
      requests: [...this.#requests].flatMap(([provider, byOutcome]) =>
        [...byOutcome].map(([outcome, n]): [string, number] => [`${provider}\u0000${outcome}`, n])
      ),
      buckets: [...this.#buckets],
      count: this.#count,
      sum: this.#sum,
      open: this.#open,
    };
  }

  /** The exposition text of these counters alone. */
  render(): string {
    return renderMetrics([this.snapshot()]);
  }
}

/** The exposition text of the sum of `snapshots` (one per isolate of a broker). */
export function renderMetrics(snapshots: readonly MetricsSnapshot[]): string {
  const requests = new Map<string, number>();
  const buckets = new Array<number>(DURATION_BUCKETS.length).fill(0);
  let count = 0;
  let sum = 0;
  let open = 0;
  for (const snapshot of snapshots) {
    for (const [key, n] of snapshot.requests) requests.set(key, (requests.get(key) ?? 0) + n);
    snapshot.buckets.forEach((n, i) => buckets[i] += n);
    count += snapshot.count;
    sum += snapshot.sum;
    open += snapshot.open;
  }
  const lines = [
    "# HELP vault_broker_requests_total Requests by provider and outcome.",
    "# TYPE vault_broker_requests_total counter",
  ];
  for (const [key, n] of [...requests].sort(([a], [b]) => a < b ? -1 : 1)) {
    const [provider, outcome] = key.split("\u0000");
    lines.push(
      `vault_broker_requests_total{provider="${label(provider)}",outcome="${label(outcome)}"} ${n}`,
    );
  }
  lines.push(
    "# HELP vault_broker_request_duration_seconds Time to the response head (or the error).",
    "# TYPE vault_broker_request_duration_seconds histogram",
  );
  DURATION_BUCKETS.forEach((le, i) =>
    lines.push(`vault_broker_request_duration_seconds_bucket{le="${le}"} ${buckets[i]}`)
  );
  lines.push(
    `vault_broker_request_duration_seconds_bucket{le="+Inf"} ${count}`,
    `vault_broker_request_duration_seconds_sum ${sum}`,
    `vault_broker_request_duration_seconds_count ${count}`,
    "# HELP vault_broker_open_streams Responses streaming to clients now.",
    "# TYPE vault_broker_open_streams gauge",
    `vault_broker_open_streams ${open}`,
  );
  return lines.join("\n") + "\n";
}

/** A label value in Prometheus quoting (backslash, quote and newline escaped). */
function label(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}
