import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TextTokenizer } from '../lib/models/tokenizer.js';
import { STORIES } from './helpers/models.js';

const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const LLAMA2 =
  "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
  "{% else %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}{% endfor %}";

describe('TextTokenizer', () => {
  const json = JSON.parse(readFileSync(`${STORIES}/tokenizer.json`, 'utf8'));
  const config = JSON.parse(readFileSync(`${STORIES}/tokenizer_config.json`, 'utf8'));

  it('reads special tokens from tokenizer_config.json and round-trips text', () => {
    const tok = TextTokenizer.fromDir(STORIES);
    expect(tok.bosTokenId).toBe(1);
    expect(tok.eosTokenId).toBe(2);
    expect(tok.vocabSize).toBe(512);
    const ids = tok.encode('Lily saw a big dog.');
    expect(ids[0]).toBe(1);
    expect(tok.encode('Lily saw a big dog.', { addSpecialTokens: false })).toEqual(ids.slice(1));
    expect(tok.decode(ids)).toBe('Lily saw a big dog.');
    // byte fallback: characters outside the 512-piece vocabulary survive a round trip
    expect(tok.decode(tok.encode('naïve 🙂'))).toBe('naïve 🙂');
  });

  it('renders chat templates as transformers does', () => {
    const tok = new TextTokenizer(json, { ...config, chat_template: CHATML });
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
    ];
    expect(tok.applyChatTemplate(messages)).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
    );
    expect(tok.applyChatTemplate(messages, { addGenerationPrompt: false })).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n',
    );
    const llama = tok.applyChatTemplate(
      [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello' },
      ],
      { template: LLAMA2 },
    );
    expect(llama).toBe('<s>[INST] Hi [/INST] Hello </s>');
  });

  it('says which field is missing when there is no template', () => {
    const tok = new TextTokenizer(json, config);
    expect(() => tok.applyChatTemplate([{ role: 'user', content: 'x' }])).toThrow(/chat_template/);
  });
});
