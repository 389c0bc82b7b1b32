/**
 * One client process of `bench/agent_bench.ts`: one connection to an SSH
 * agent's Unix socket, sending SIGN_REQUESTs back to back.
 *
 * The parent spawns it once per client (the same program for ssh-agent and
 * vault), reads `ready` from its stdout once it is connected, writes `go`
 * to its stdin, and reads one JSON line with the results when it is done:
 * `{ "ops", "seconds", "latencies" }`, the latencies (µs, float32, base64)
 * of the measured window only.
 *
 * The client must cost little per request, since it shares the cores with
 * the agent. `--io=libc` (default) talks to the socket with blocking
 * `write(2)`/`read(2)` through libc over FFI: no event loop and no promise
 * per request, every request frame built before timing, one read buffer.
 * `--io=deno` uses `Deno.connect` and awaits `write`/`read` (what a Deno
 * program would normally do), to show what that costs.
 *
 * Arguments: `--socket=<path> --blob=<base64 public key blob> --flags=<n>
 * --warm=<ms> --measure=<ms> --seed=<n> [--io=libc|deno]`.
 *
 * @module
 */

const args = new Map(
  Deno.args.map((a) => {
    const i = a.indexOf("=");
    return [a.slice(2, i), a.slice(i + 1)] as const;
  }),
);
const arg = (name: string): string => {
  const value = args.get(name);
  if (value === undefined) throw new Error(`missing --${name}`);
  return value;
};

const SOCKET = arg("socket");
const BLOB = Uint8Array.fromBase64(arg("blob"));
const FLAGS = Number(arg("flags"));
const WARM_MS = Number(arg("warm"));
const MEASURE_MS = Number(arg("measure"));
const SEED = Number(arg("seed"));
const IO = args.get("io") ?? "libc";
/** A reply not complete within this long ends the client with an error (hang guard). */
const READ_TIMEOUT_S = 5;

const SIGN_REQUEST = 13;
const SIGN_RESPONSE = 14;

/** 256 complete SIGN_REQUEST frames over 32–64 random bytes, built before timing. */
const FRAMES: Uint8Array[] = Array.from({ length: 256 }, () => {
  const data = crypto.getRandomValues(new Uint8Array(32 + Math.floor(Math.random() * 33)));
  const length = 1 + 4 + BLOB.length + 4 + data.length + 4;
  const frame = new Uint8Array(4 + length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, length);
  frame[4] = SIGN_REQUEST;
  view.setUint32(5, BLOB.length);
  frame.set(BLOB, 9);
  view.setUint32(9 + BLOB.length, data.length);
  frame.set(data, 13 + BLOB.length);
  view.setUint32(13 + BLOB.length + data.length, FLAGS >>> 0);
  return frame;
});

/** One connection: send a frame, wait for the whole reply. */
interface Transport {
  /** Sends `frame` and reads one reply frame; returns its type. */
  roundTrip(frame: Uint8Array): number | Promise<number>;
  close(): void;
}

const BUF = new Uint8Array(64 * 1024);
const BUF_VIEW = new DataView(BUF.buffer);

function libcTransport(path: string): Transport {
  const libc = Deno.dlopen("libc.so.6", {
    socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
    connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
    write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
    read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
    close: { parameters: ["i32"], result: "i32" },
  });
  const s = libc.symbols;
  const AF_UNIX = 1, SOCK_STREAM = 1, SOL_SOCKET = 1, SO_RCVTIMEO = 20;
  const fd = s.socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) throw new Error("socket() failed");
  // struct sockaddr_un: sa_family_t (u16, host order) + 108-byte path.
  const address = new Uint8Array(110);
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  const pathBytes = new TextEncoder().encode(path);
  if (pathBytes.length >= 108) throw new Error("socket path too long");
  address.set(pathBytes, 2);
  if (s.connect(fd, address, address.length) !== 0) throw new Error(`connect(${path}) failed`);
  // struct timeval { tv_sec, tv_usec } (64-bit): a read waits at most READ_TIMEOUT_S.
  const timeout = new BigInt64Array([BigInt(READ_TIMEOUT_S), 0n]);
  s.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, new Uint8Array(timeout.buffer), 16);
  // Views at each possible read offset are made once (partial replies are rare).
  const tails: Uint8Array[] = [];
  const tail = (at: number) => tails[at] ??= BUF.subarray(at);
  const whole = BigInt(BUF.length);
  const lengths = new Map<Uint8Array, bigint>(FRAMES.map((f) => [f, BigInt(f.length)]));
  return {
    roundTrip(frame: Uint8Array): number {
      let sent = 0;
      while (sent < frame.length) {
        const n = Number(
          sent === 0
            ? s.write(fd, frame, lengths.get(frame)!)
            : s.write(fd, frame.subarray(sent), BigInt(frame.length - sent)),
        );
        if (n <= 0) throw new Error("write() failed");
        sent += n;
      }
      let got = 0;
      let need = 4;
      while (got < need) {
        const n = Number(
          got === 0 ? s.read(fd, BUF, whole) : s.read(fd, tail(got), BigInt(BUF.length - got)),
        );
        if (n <= 0) throw new Error(n === 0 ? "the agent closed the connection" : "read() failed");
        got += n;
        if (need === 4 && got >= 4) need = 4 + BUF_VIEW.getUint32(0);
        if (need > BUF.length) throw new Error("reply too long");
      }
      if (got !== need) throw new Error("more than one reply");
      return BUF[4];
    },
    close() {
      s.close(fd);
      libc.close();
    },
  };
}

async function denoTransport(path: string): Promise<Transport> {
  const conn = await Deno.connect({ transport: "unix", path });
  return {
    async roundTrip(frame: Uint8Array): Promise<number> {
      let sent = 0;
      while (sent < frame.length) sent += await conn.write(frame.subarray(sent));
      let got = 0;
      let need = 4;
      while (got < need) {
        const n = await conn.read(BUF.subarray(got));
        if (n === null) throw new Error("the agent closed the connection");
        got += n;
        if (need === 4 && got >= 4) need = 4 + BUF_VIEW.getUint32(0);
        if (need > BUF.length) throw new Error("reply too long");
      }
      if (got !== need) throw new Error("more than one reply");
      return BUF[4];
    },
    close: () => conn.close(),
  };
}

const transport = IO === "deno" ? await denoTransport(SOCKET) : libcTransport(SOCKET);
const stdout = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));

stdout("ready");
// Wait for `go` (or the parent closing stdin, which means stop).
const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
let input = "";
while (!input.includes("\n")) {
  const { value, done } = await reader.read();
  if (done) Deno.exit(1);
  input += value;
}
reader.releaseLock();

let latencies = new Float32Array(1 << 16);
let ops = 0;
let i = SEED * 31;
const start = performance.now();
const measureFrom = start + WARM_MS;
const end = measureFrom + MEASURE_MS;
let measuredFrom = 0;
let t = start;
while (t < end) {
  const frame = FRAMES[i++ & 255];
  const t0 = t;
  const type = IO === "deno"
    ? await transport.roundTrip(frame)
    : transport.roundTrip(frame) as number;
  if (type !== SIGN_RESPONSE) throw new Error(`the agent answered message type ${type}`);
  t = performance.now();
  if (t0 >= measureFrom) {
    if (ops === 0) measuredFrom = t0;
    if (ops === latencies.length) {
      const grown = new Float32Array(latencies.length * 2);
      grown.set(latencies);
      latencies = grown;
    }
    latencies[ops++] = (t - t0) * 1000;
  }
}
transport.close();
const seconds = ops === 0 ? 0 : (t - measuredFrom) / 1000;
const bytes = new Uint8Array(latencies.buffer, 0, ops * 4);
stdout(JSON.stringify({ ops, seconds, latencies: bytes.toBase64() }));
Deno.exit(0);
