import { Command } from 'commander';
import { basename } from 'node:path';
import { envSecret } from '../../util/env.js';
import { loadModelOrAdapter } from '../../train/adapted.js';
import { chatTemplateOption, engineOpts, int } from '../options.js';
import { DEFAULTS } from '../../util/defaults.js';

export function serveCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'an OpenAI-compatible HTTP server over the in-process engine (/v1/models, /v1/completions, /v1/chat/completions)',
    )
    .requiredOption('-m, --model <dir>', 'model folder (or a shipped model name)')
    .option('--host <host>', 'address to listen on (default 127.0.0.1: this machine only)', DEFAULTS.serve.host)
    .option(
      '--adapter <dir>',
      'a PEFT LoRA adapter folder to apply to the model (a PEFT folder given as -m finds its base itself)',
    )
    .option('--port <n>', 'port (0: any free port)', int('--port', 0), DEFAULTS.serve.port)
    .option('--model-name <name>', 'the model id clients send (default: the folder name)')
    .option('--api-key-env <NAME>', 'require the API key held in this environment variable')
    .option(
      '--api-key <key>',
      'require this API key (visible to other users in the process list: prefer --api-key-env)',
    )
    .option(
      '--chat-template <t>',
      'chat prompts: chatml, alpaca, plain or a Jinja file (default: the tokenizer chat template, else chatml)',
    )
    .option('--batch-size <n>', 'requests per forward pass', int('--batch-size', 1), DEFAULTS.serve.batchSize)
    .option(
      '--max-tokens <n>',
      'largest max_tokens a request may ask for (default: the context window)',
      int('--max-tokens', 1),
    )
    .option('--max-body-bytes <n>', 'largest request body', int('--max-body-bytes', 1024), DEFAULTS.serve.maxBodyBytes)
    .option('--quiet', 'no line per request on stderr')
    .action(async (o, cmd: Command) => {
      const apiKey = o.apiKeyEnv !== undefined ? envSecret(o.apiKeyEnv, '--api-key-env') : o.apiKey;
      const chatTemplate = chatTemplateOption(o.chatTemplate);
      const loaded = await loadModelOrAdapter(o.model, o.adapter, engineOpts(cmd));
      const { serve } = await import('../../serve/server.js');
      const server = await serve(loaded, {
        host: o.host,
        port: o.port,
        modelName: o.modelName,
        apiKey,
        chatTemplate,
        batchSize: o.batchSize,
        maxTokens: o.maxTokens,
        maxBodyBytes: o.maxBodyBytes,
        log: o.quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
      });
      process.stderr.write(
        `llmbox serve: ${o.modelName ?? loaded.name ?? basename(loaded.dir)} at ${server.url}${apiKey ? ' (API key required)' : ''}\n`,
      );
      await new Promise<void>((resolve) => {
        const stop = () => void server.close().then(resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
