import { Command } from 'commander';
import { LlmboxError } from '../../errors.js';
import { generate, generateStream } from '../../models/generate.js';
import { loadModelOrAdapter } from '../../train/adapted.js';
import { LocalLM } from '../../eval/local.js';
import { isRemoteSpec, remoteModel } from '../../eval/remote/index.js';
import { chatTemplateOption, engineOpts, float, int, print } from '../options.js';
import { DEFAULTS } from '../../util/defaults.js';

export function generateCommand(program: Command): void {
  program
    .command('generate')
    .description('continue a prompt, or (--chat) reply to it as a chat model')
    .requiredOption(
      '-m, --model <spec>',
      'model folder (Hugging Face layout); with --chat also openai:MODEL, anthropic:MODEL or http://HOST:PORT/v1::MODEL',
    )
    .requiredOption('-p, --prompt <text>', 'prompt text (with --chat: the user turn)')
    .option(
      '--adapter <dir>',
      'a PEFT LoRA adapter folder to apply to the model (a PEFT folder given as -m finds its base itself)',
    )
    .option(
      '--chat',
      "reply as the assistant under the chat template (local: the tokenizer's, --chat-template, else ChatML)",
    )
    .option('--system-prompt <text>', '--chat: a system turn first')
    .option('--chat-template <t>', '--chat, local models: chatml, alpaca, plain or a Jinja file')
    .option('--stream', 'print the text as it is generated')
    .option('--api-key-env <NAME>', 'remote models: the environment variable holding the API key')
    .option('--max-new-tokens <n>', 'tokens to generate', int('--max-new-tokens'), DEFAULTS.generate.maxNewTokens)
    .option('--temperature <t>', '0 = greedy', float('--temperature', 0), DEFAULTS.generate.temperature)
    .option('--top-p <p>', 'nucleus sampling mass', float('--top-p', 0, 1))
    .option('--top-k <k>', 'sample among the k most likely', int('--top-k', 1))
    .option(
      '--repetition-penalty <r>',
      'penalise repeated tokens (> 1)',
      float('--repetition-penalty', 0, Infinity, { minExclusive: true }),
    )
    .option('--seed <s>', 'sampling seed', int('--seed'))
    .option('--num-beams <n>', 'beam search with n beams (local models, greedy scores)', int('--num-beams', 1))
    .option(
      '--length-penalty <x>',
      'beam search: score / length^x (> 0 favours longer replies)',
      float('--length-penalty', -10, 10),
    )
    .option('--stop <text...>', 'stop strings')
    .option('--json', 'print {"prompt_ids", "ids", "text"} (--chat: {"messages", "text", "finish_reason"})')
    .action(async (o, cmd: Command) => {
      const onText = o.stream && !o.json ? (t: string) => process.stdout.write(t) : undefined;
      if (o.chat) {
        const model = isRemoteSpec(o.model)
          ? remoteModel(o.model, {
              modelType: 'chat',
              apiKeyEnv: o.apiKeyEnv,
              systemPrompt: o.systemPrompt,
              requestCache: false,
            })
          : new LocalLM(await loadModelOrAdapter(o.model, o.adapter, engineOpts(cmd)), {
              modelType: 'chat',
              chat: { template: chatTemplateOption(o.chatTemplate), systemPrompt: o.systemPrompt },
            });
        const messages = [{ role: 'user' as const, content: o.prompt as string }];
        const r = await model.chat(messages, {
          maxNewTokens: o.maxNewTokens,
          temperature: o.temperature,
          topP: o.topP,
          topK: o.topK,
          seed: o.seed,
          stop: o.stop,
          onText,
        });
        const all = [
          ...(o.systemPrompt !== undefined ? [{ role: 'system', content: o.systemPrompt }] : []),
          ...messages,
          { role: 'assistant', content: r.text },
        ];
        return print(!!o.json, { messages: all, text: r.text, finish_reason: r.finishReason }, onText ? '' : r.text);
      }
      if (isRemoteSpec(o.model))
        throw new LlmboxError('remote models generate replies to chat turns here', {
          field: '--model',
          fix: 'add --chat, or evaluate with llmbox eval',
        });
      const loaded = await loadModelOrAdapter(o.model, o.adapter, engineOpts(cmd));
      if (onText) process.stdout.write(o.prompt);
      const decode = {
        maxNewTokens: o.maxNewTokens,
        temperature: o.temperature,
        topP: o.topP,
        topK: o.topK,
        repetitionPenalty: o.repetitionPenalty,
        seed: o.seed,
        stop: o.stop,
        numBeams: o.numBeams,
        lengthPenalty: o.lengthPenalty,
      };
      if (onText && (o.numBeams ?? 1) > 1)
        throw new LlmboxError('beam search decides the reply at the end: it cannot stream', {
          field: '--stream',
          fix: 'drop --stream or --num-beams',
        });
      const r = onText
        ? await generateStream(loaded, o.prompt, decode, onText)
        : (await generate(loaded, [o.prompt], decode))[0];
      print(
        !!o.json,
        { prompt_ids: r.promptIds, ids: r.ids, text: r.text, finish_reason: r.finishReason, seed: r.seed },
        onText ? '' : o.prompt + r.text,
      );
    });
}
