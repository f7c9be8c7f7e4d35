// `npm run docs`: rewrite the README's command reference from every command's --help (src/cli/docs.ts).
import { readFileSync, writeFileSync } from "node:fs";
import { serveCommand } from "../server/serve.ts";
import { serveEdgeCommand } from "../server/serve-edge.ts";
import { cliSpecs, withHelp } from "../src/cli/docs.ts";

const README = new URL("../README.md", import.meta.url).pathname;
writeFileSync(README, withHelp(readFileSync(README, "utf8"), [...(await cliSpecs()), serveCommand, serveEdgeCommand]));
console.log("README.md: the command reference is rewritten from --help");
