/**
 * PEM armour (`-----BEGIN LABEL-----` … `-----END LABEL-----`) and the strict
 * base64 it wraps.
 *
 * @module
 */

import { InvalidKeyFile } from "./errors.ts";

/** One decoded PEM block. */
export interface PemBlock {
  /** The label between `BEGIN ` and the dashes, e.g. `OPENSSH PRIVATE KEY`. */
  label: string;
  /** RFC 1421 headers such as `Proc-Type`, keyed by their name as written. */
  headers: Map<string, string>;
  /** The decoded body. */
  body: Uint8Array;
}

const BEGIN = "-----BEGIN ";
const DASHES = "-----";
const LABEL = /^[A-Z0-9]+(?: [A-Z0-9]+)*$/;

/**
 * Decodes the first PEM block in `text`. Text before `BEGIN` and after `END`
 * is ignored. Throws {@link InvalidKeyFile} when there is no well-formed block.
 */
export function decodePem(text: string): PemBlock {
  const start = text.indexOf(BEGIN);
  if (start < 0) throw new InvalidKeyFile("no PEM block found");
  const labelStart = start + BEGIN.length;
  const labelEnd = text.indexOf(DASHES, labelStart);
  const label = labelEnd < 0 ? "" : text.slice(labelStart, labelEnd);
  if (label.length > 64 || !LABEL.test(label)) throw new InvalidKeyFile("malformed PEM header");

  const bodyStart = labelEnd + DASHES.length;
  const endMarker = `-----END ${label}-----`;
  const end = text.indexOf(endMarker, bodyStart);
  if (end < 0) throw new InvalidKeyFile("PEM block has no end line");

  const lines = text.slice(bodyStart, end).split(/\r?\n/);
  if (lines.shift()?.trim() !== "") throw new InvalidKeyFile("malformed PEM header");
  const headers = new Map<string, string>();
  let name = "";
  while (lines.length > 0) {
    const line = lines[0];
    const colon = line.indexOf(":");
    if (colon > 0) {
      name = line.slice(0, colon).trim();
      headers.set(name, line.slice(colon + 1).trim());
    } else if (name !== "" && /^[ \t]/.test(line)) {
      headers.set(name, `${headers.get(name)} ${line.trim()}`);
    } else {
      break;
    }
    lines.shift();
  }
  const body = decodeBase64(lines.join("\n"));
  if (body.length === 0) throw new InvalidKeyFile("empty PEM body");
  return { label, headers, body };
}

/**
 * Armours `body` as PEM with base64 lines of `width` characters, after the
 * given RFC 1421 `headers` (if any) and a blank line. Ends with a newline.
 */
export function encodePem(
  label: string,
  body: Uint8Array,
  width = 64,
  headers: ReadonlyMap<string, string> = new Map(),
): string {
  const b64 = body.toBase64();
  let out = `${BEGIN}${label}${DASHES}\n`;
  for (const [name, value] of headers) out += `${name}: ${value}\n`;
  if (headers.size > 0) out += "\n";
  for (let i = 0; i < b64.length; i += width) out += `${b64.slice(i, i + width)}\n`;
  return `${out}-----END ${label}${DASHES}\n`;
}

/**
 * Decodes padded standard base64, ignoring ASCII whitespace. Throws
 * {@link InvalidKeyFile} on any other character or on bad padding.
 */
export function decodeBase64(text: string): Uint8Array {
  try {
    return Uint8Array.fromBase64(text, { lastChunkHandling: "strict" });
  } catch {
    throw new InvalidKeyFile("malformed base64");
  }
}
