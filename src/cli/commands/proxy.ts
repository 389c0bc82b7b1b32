/**
 * `vault proxy ca [rotate]`: a scope's forward-proxy CA (issue 19).
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import type { Context } from "../context.ts";
import { validateScope } from "../../store/validate.ts";

/** Adds `vault proxy …` to `program`. */
export function addProxyCommands(program: Command, ctx: Context): void {
  const proxy = program.command("proxy").description("the forward proxy's per-scope CAs");
  const ca = proxy.command("ca")
    .description("print a scope's proxy CA certificate (PEM), creating it when missing")
    .requiredOption("--scope <scope>", "the scope")
    .addHelpText(
      "after",
      `
The forward proxy ('vault serve --proxy-port') terminates TLS for the hosts
routes name with leaf certificates this CA signs; a sandbox of the scope
trusts it ('vault config apply' writes it into the mounts). Its private key
stays inside the encrypted database. Only the certificate is printed.`,
    )
    .action(async (options) => {
      validateScope(options.scope);
      const { scopeCa } = await import("../../broker/proxy_ca.ts");
      const pem = await ctx.withStore(async (store) => {
        const material = await scopeCa(store, options.scope);
        material.keyPkcs8.fill(0);
        return material.certPem;
      });
      ctx.out.data(pem.endsWith("\n") ? pem : `${pem}\n`);
    });
  ca.command("rotate")
    .description("replace a scope's proxy CA with a new one and print it (PEM)")
    .requiredOption("--scope <scope>", "the scope")
    .addHelpText(
      "after",
      `
Sandboxes must then trust the new certificate ('vault config apply' again);
a running 'vault serve' issues leaves from the new CA from its next tunnel.`,
    )
    .action(async (options) => {
      validateScope(options.scope);
      const { scopeCa } = await import("../../broker/proxy_ca.ts");
      const pem = await ctx.withStore(async (store) => {
        const material = await scopeCa(store, options.scope, { rotate: true });
        material.keyPkcs8.fill(0);
        return material.certPem;
      });
      ctx.out.data(pem.endsWith("\n") ? pem : `${pem}\n`);
    });
}
