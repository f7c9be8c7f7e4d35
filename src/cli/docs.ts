// The README's command reference is every command's --help, between markers:
//   <!-- help:NAME -->  ...  <!-- /help:NAME -->
// `npm run docs` (test/docs.ts) rewrites those blocks; test/cli.node.test.ts fails when one differs.
import { type CommandSpec, helpText } from "./command.ts";
import { COMMANDS } from "./run.ts";

/** The README with every help block rewritten from `specs`. */
export function withHelp(readme: string, specs: CommandSpec[]): string {
  let out = readme;
  for (const spec of specs) {
    const block = new RegExp(`(<!-- help:${spec.name} -->\\n)[\\s\\S]*?(<!-- /help:${spec.name} -->)`);
    if (!block.test(out)) throw new Error(`README.md has no <!-- help:${spec.name} --> block`);
    out = out.replace(
      block,
      (_, open: string, close: string) => `${open}\n\`\`\`text\n${helpText(spec)}\n\`\`\`\n\n${close}`,
    );
  }
  return out;
}

/** The command specs the README documents: every command of src/cli/run.ts (serve is added by the caller). */
export async function cliSpecs(): Promise<CommandSpec[]> {
  return Promise.all(Object.values(COMMANDS).map(async (load) => (await load()).command));
}
