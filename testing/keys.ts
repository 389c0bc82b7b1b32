/**
 * The key set both agents hold in the agent benchmark and the SSH end-to-end
 * tests: one Ed25519 and one RSA-3072 key, generated in memory per run.
 *
 * Comments follow vault's scope convention (`tk-main:<scope>` first, then
 * `tk-side:<scope>:1`) so that vault's agent offers them in the same order
 * ssh-agent does when they are added in this order.
 *
 * @module
 */

import { fingerprint, generateKey, publicLine, type SshKeyPair } from "../src/openssh/keys.ts";

/** A key with everything a test or the benchmark compares against. */
export interface TestKey {
  /** Short label: `ed25519` or `rsa-3072`. */
  label: string;
  material: SshKeyPair;
  comment: string;
  /** `<algorithm> <base64> <comment>`, as `ssh-add -L` prints it. */
  publicLine: string;
  /** `SHA256:…`. */
  fingerprint: string;
  /** Bits as `ssh-add -l` prints them. */
  bits: number;
  /** Type as `ssh-add -l` prints it: `ED25519` or `RSA`. */
  sshAddType: string;
}

/** Wraps key material with its derived facts. */
export function testKey(label: string, material: SshKeyPair, comment: string): TestKey {
  return {
    label,
    material,
    comment,
    publicLine: publicLine(material.publicBlob, comment),
    fingerprint: fingerprint(material.publicBlob),
    bits: material.keyType === "ed25519" ? 256 : 3072,
    sshAddType: material.keyType === "ed25519" ? "ED25519" : "RSA",
  };
}

/** A fresh Ed25519 key and a fresh RSA-3072 key for `scope`, in agent order. */
export function makeTestKeys(scope: string): TestKey[] {
  return [
    testKey("ed25519", generateKey("ed25519"), `tk-main:${scope}`),
    testKey("rsa-3072", generateKey("rsa"), `tk-side:${scope}:1`),
  ];
}
