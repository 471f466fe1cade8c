"""TextEncode reads prompts as ComfyUI does (comfy/sd1_clip.py): weights,
escapes, textual-inversion embeddings and prompts of several 75-token chunks.
The references here rebuild ComfyUI's token rows by hand and apply its
formula to the tiny CLIPs' outputs; a prompt without syntax stays bitwise
what diffusers' encode_prompt gives."""

from __future__ import annotations

import pytest
import torch
from lcmgraph_nodes.diffusion.models.prompt_syntax import (
    CHUNK,
    chunks,
    embedding_names,
    is_plain,
    pieces,
    weighted_segments,
)

from lcmgraph.problems import WorkflowInvalid

from ..helpers import assert_close_portable
from .diffusion_helpers import Flow, link, new_engine, reference, value_of


# -- parsing ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("a red cat", [("a red cat", 1.0)]),
    ("a (red:1.3) cat", [("a ", 1.0), ("red", 1.3), (" cat", 1.0)]),
    ("(red)", [("red", 1.1)]),
    ("((red))", [("red", 1.1 * 1.1)]),
    ("(x (y:0.5) z:1.4)", [("x ", 1.4), ("y", 0.5), (" z", 1.4)]),
    ("((y:0.5))", [("y", 0.5)]),  # an inner weight replaces the outer ones
    ("\\(red\\) cat", [("(red) cat", 1.0)]),
    ("[red] cat", [("[red] cat", 1.0)]),  # square brackets are A1111's, not ComfyUI's
    ("(a:b)", [("a:b", 1.1)]),  # not a number after the colon: text, weighted 1.1
    ("a ) b", [("a ) b", 1.0)]),
    ("", []),
])
def test_weights_parse_as_comfyui_parses_them(text, expected):
    got = weighted_segments(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


def test_embedding_references():
    parsed = pieces("photo embedding:foo, bar\nembedding:baz (embedding:qux:1.2) xembedding:no")
    assert [(p.text, p.weight, p.embedding, p.rest) for p in parsed] == [
        ("photo", 1.0, False, ""), ("foo,", 1.0, True, "bar"), ("baz", 1.0, True, ""),  # "baz "'s space goes
        ("qux", 1.2, True, ""), (" xembedding:no", 1.0, False, "")]
    assert embedding_names("embedding:a b embedding:c") == ["a", "c"]
    assert is_plain("a red cat") and is_plain("") and is_plain("a ) b")
    assert not is_plain("(red)") and not is_plain("embedding:x") and not is_plain("\\(x\\)")


def test_chunks_hold_75_tokens_and_keep_short_pieces_whole():
    tok = lambda n, w=1.0: [(7, w)] * n  # noqa: E731
    laid = chunks([tok(100)], 1, 2, 0)  # a long piece is split at the edge
    assert [len(c) for c in laid] == [CHUNK, CHUNK]
    assert [t for t, _ in laid[0]] == [1] + [7] * 75 + [2]
    assert [t for t, _ in laid[1]] == [1] + [7] * 25 + [2] + [0] * 50
    laid = chunks([tok(70), tok(7, 1.5)], 1, 2, 0)  # 7 tokens do not fit after 70: they move whole
    assert [t for t, _ in laid[0]] == [1] + [7] * 70 + [2] + [0] * 5
    assert laid[1][1:8] == [(7, 1.5)] * 7
    assert [t for t, _ in chunks([], 1, 2, 0)[0]] == [1, 2] + [0] * 75


# -- encoding against ComfyUI's formula -------------------------------------------------------
def _encode(engine, ckpt: str, text: str, syntax: str = "comfy", layer: int | None = None):
    f = Flow()
    f.add("ckpt", "LoadCheckpoint", checkpoint=ckpt)
    clip = link("ckpt", "clip")
    if layer is not None:
        f.add("skip", "CLIPSetLastLayer", clip=clip, stop_at_clip_layer=layer)
        clip = link("skip", "clip")
    f.add("text", "TextEncode", clip=clip, text=text, syntax=syntax)
    return value_of(engine, f, "text", "conditioning")


def _rows(tokenizer, parts, pad=None):
    """ComfyUI's rows for a prompt of (text, weight) parts that fits one chunk."""
    ids, weights = [tokenizer.bos_token_id], [1.0]
    for text, weight in parts:
        t = tokenizer(text)["input_ids"][1:-1]
        ids += t
        weights += [weight] * len(t)
    pad = tokenizer.pad_token_id if pad is None else pad
    ids += [tokenizer.eos_token_id] + [pad] * (CHUNK - len(ids) - 1)
    weights += [1.0] * (CHUNK - len(weights))
    return ids, weights


def _comfy_reference(encoder, tokenizer, rows, hidden=None, norm=False):
    """ComfyUI's ClipTokenWeightEncoder: the rows and the empty prompt in one batch,
    then (z - z_empty) * w + z_empty for every token whose weight is not 1."""
    empty = [tokenizer.bos_token_id, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * (CHUNK - 2)
    weighted = any(w != 1.0 for _, ws in rows for w in ws)
    batch = [ids for ids, _ in rows] + ([empty] if weighted else [])
    with torch.no_grad():
        out = encoder(torch.tensor(batch), output_hidden_states=True)
    if hidden is None:
        z = out.last_hidden_state.float()
    else:
        z = out.hidden_states[hidden]
        z = (encoder.text_model.final_layer_norm(z) if hasattr(encoder, "text_model") else encoder.final_layer_norm(z)) if norm else z
        z = z.float()
    result = []
    for k, (_, ws) in enumerate(rows):
        row = z[k].clone()
        for j, w in enumerate(ws):
            if w != 1.0:
                row[j] = (z[k, j] - z[-1, j]) * w + z[-1, j]
        result.append(row)
    pooled = out.text_embeds[0:1] if hasattr(out, "text_embeds") else None
    return torch.cat(result)[None], pooled


def test_a_plain_prompt_is_encoded_bitwise_as_before(engine):
    for ckpt in ("tiny", "tiny-xl"):
        for layer in (None, -2):
            comfy = _encode(engine, ckpt, "a red circle on a blue sky", layer=layer)
            plain = _encode(engine, ckpt, "a red circle on a blue sky", "plain", layer=layer)
            assert torch.equal(comfy.embeds, plain.embeds)
            if plain.pooled is not None:
                assert torch.equal(comfy.pooled, plain.pooled)
            if plain.default_negative is not None:
                assert torch.equal(comfy.default_negative, plain.default_negative)


def test_weights_mix_with_the_empty_prompt_sd15(engine, models):
    pipe = reference(models, "tiny")
    text = "a (red:1.3) (cat) ((dog:0.5) sky)"
    rows = [_rows(pipe.tokenizer, [("a ", 1.0), ("red", 1.3), (" ", 1.0), ("cat", 1.1), (" ", 1.0),
                                   ("dog", 0.5), (" sky", 1.1)])]
    expected, _ = _comfy_reference(pipe.text_encoder, pipe.tokenizer, rows)
    got = _encode(engine, "tiny", text)
    assert_close_portable(got.embeds, expected, "weighted SD1.5 prompt")
    assert not torch.equal(got.embeds, _encode(engine, "tiny", "a red cat dog sky").embeds)
    # CLIP skip: the layer through the final norm, mixed the same way.
    expected, _ = _comfy_reference(pipe.text_encoder, pipe.tokenizer, rows, hidden=-2, norm=True)
    assert_close_portable(_encode(engine, "tiny", text, layer=-2).embeds, expected, "weighted SD1.5 prompt at -2")


def test_weights_sdxl_both_encoders_and_pooled_from_the_first_chunk(engine, models):
    pipe = reference(models, "tiny-xl")
    parts = [("a ", 1.0), ("red", 1.3), (" cat", 1.0)]
    clip_l, _ = _comfy_reference(pipe.text_encoder, pipe.tokenizer, [_rows(pipe.tokenizer, parts)], hidden=-2)
    g, pooled = _comfy_reference(pipe.text_encoder_2, pipe.tokenizer_2, [_rows(pipe.tokenizer_2, parts)], hidden=-2)
    got = _encode(engine, "tiny-xl", "a (red:1.3) cat")
    assert_close_portable(got.embeds, torch.cat([clip_l, g], dim=-1), "weighted SDXL prompt")
    assert_close_portable(got.pooled, pooled, "SDXL pooled (unweighted, first chunk)")


def test_long_prompts_are_encoded_in_chunks_of_75(engine, models):
    pipe = reference(models, "tiny")
    tok = pipe.tokenizer
    red = tok("red")["input_ids"][1]
    assert len(tok("red " * 100)["input_ids"]) == 102  # one token per word
    first = [tok.bos_token_id] + [red] * 75 + [tok.eos_token_id]
    second = [tok.bos_token_id] + [red] * 25 + [tok.eos_token_id] + [tok.pad_token_id] * 50
    with torch.no_grad():
        expected = pipe.text_encoder(torch.tensor([first, second])).last_hidden_state.reshape(1, -1, 32)
    got = _encode(engine, "tiny", "red " * 100)
    assert got.embeds.shape == (1, 154, 32)
    assert_close_portable(got.embeds, expected, "two chunks")
    # The default negative (CFG without one) is the empty prompt repeated to the same length.
    empty = _encode(engine, "tiny", "").default_negative
    assert torch.equal(got.default_negative, empty.repeat(1, 2, 1))
    # "plain" keeps diffusers' truncation at 77 tokens.
    assert _encode(engine, "tiny", "red " * 100, "plain").embeds.shape == (1, 77, 32)
    xl = _encode(engine, "tiny-xl", "red " * 100)
    assert xl.embeds.shape == (1, 154, 64) and xl.pooled.shape == (1, 32)


# -- embeddings ------------------------------------------------------------------------------
def _token_rows(pipe, encoder_name: str, words: str):
    encoder = getattr(pipe, encoder_name)
    tokenizer = pipe.tokenizer if encoder_name == "text_encoder" else pipe.tokenizer_2
    ids = tokenizer(words)["input_ids"][1:-1]
    return encoder.get_input_embeddings().weight[ids].detach().clone()


@pytest.fixture(scope="module")
def embeddings(models, tmp_path_factory):
    """Embeddings whose vectors are the token embeddings of words: 'embedding:NAME'
    must then encode exactly as the words do."""
    from safetensors.torch import save_file

    sd15, xl = reference(models, "tiny"), reference(models, "tiny-xl")
    folder = tmp_path_factory.mktemp("embeddings")
    save_file({"emb_params": _token_rows(sd15, "text_encoder", "red cat")}, str(folder / "redcat.safetensors"))
    # A1111's .pt layout, read with weights_only=True.
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": _token_rows(sd15, "text_encoder", "blue dog")},
                "name": "bluedog", "step": 100}, folder / "bluedog.pt")
    save_file({"clip_l": _token_rows(xl, "text_encoder", "red cat"), "clip_g": _token_rows(xl, "text_encoder_2", "red cat")},
              str(folder / "xl-redcat.safetensors"))
    (folder / "styles").mkdir()
    save_file({"emb_params": _token_rows(sd15, "text_encoder", "sky")}, str(folder / "styles" / "sky.safetensors"))
    return folder


@pytest.fixture(scope="module")
def emb_engine(models, embeddings, tmp_path_factory):
    return new_engine(models, tmp_path_factory.mktemp("emb"), folders={"embeddings": [embeddings]})


@pytest.mark.parametrize("ckpt, prompt, words", [
    ("tiny", "a photo of embedding:redcat on a blue sky", "a photo of red cat on a blue sky"),
    ("tiny", "a (embedding:bluedog.pt:1.3) and embedding:styles/sky", "a (blue dog:1.3) and sky"),
    ("tiny", "embedding:redcat, blue", "red cat, blue"),  # the comma is tried off the name
    ("tiny-xl", "a photo of embedding:xl-redcat on a blue sky", "a photo of red cat on a blue sky"),
    ("tiny", "embedding:xl-redcat", "red cat"),  # an SDXL file's clip_l vectors serve SD1.5
])
def test_an_embedding_encodes_as_the_tokens_it_holds(emb_engine, ckpt, prompt, words):
    got, expected = _encode(emb_engine, ckpt, prompt), _encode(emb_engine, ckpt, words)
    assert_close_portable(got.embeds, expected.embeds, prompt)
    if expected.pooled is not None:
        assert_close_portable(got.pooled, expected.pooled, prompt + " pooled")


def test_embeddings_are_validated_and_keyed_by_file(emb_engine, embeddings):
    f = Flow()
    f.add("ckpt", "LoadCheckpoint", checkpoint="tiny")
    f.add("text", "TextEncode", clip=link("ckpt", "clip"), text="embedding:nothere, a (embedding:redcat:1.2)")
    f.add("capture", "Capture", value=link("text", "conditioning"))
    with pytest.raises(WorkflowInvalid) as err:
        emb_engine.run(f.doc("capture"))
    problems = [(p.node, p.input, p.message) for p in err.value.problems]
    assert problems == [("text", "text", problems[0][2])] and "'nothere'" in problems[0][2]
    assert "embeddings folder" in problems[0][2]
    # "plain" reads no embedding: nothing to find.
    f.nodes["text"]["inputs"]["syntax"] = "plain"
    emb_engine.run(f.doc("capture"))

    f.nodes["text"]["inputs"].update(text="a embedding:redcat", syntax="comfy")
    first = emb_engine.run(f.doc("capture")).values["text"]["conditioning"]
    assert "text" not in emb_engine.run(f.doc("capture")).executed  # cached
    from safetensors.torch import save_file

    path = embeddings / "redcat.safetensors"
    original = path.read_bytes()
    save_file({"emb_params": torch.randn(2, 32, generator=torch.Generator().manual_seed(0))}, str(path))
    try:
        again = emb_engine.run(f.doc("capture"))
        assert "text" in again.executed  # a changed embedding file re-runs the encoder
        assert not torch.equal(again.values["text"]["conditioning"].embeds, first.embeds)
    finally:
        path.write_bytes(original)


class Payload:
    """Any class: weights_only loading refuses to build it."""


def test_a_pickled_object_in_an_embedding_is_refused(emb_engine, embeddings):
    torch.save({"emb_params": torch.zeros(1, 32), "extra": Payload()}, embeddings / "evil.pt")
    with pytest.raises(Exception, match="weights_only|could not be read"):
        _encode(emb_engine, "tiny", "embedding:evil")


def test_an_embedding_for_another_width_is_refused(emb_engine, embeddings):
    from safetensors.torch import save_file

    save_file({"emb_params": torch.zeros(1, 768)}, str(embeddings / "wide.safetensors"))
    with pytest.raises(Exception, match="768 wide"):
        _encode(emb_engine, "tiny", "embedding:wide")


def test_a_linked_prompt_is_keyed_by_the_whole_embeddings_folder(emb_engine, embeddings):
    f = Flow()
    f.add("ckpt", "LoadCheckpoint", checkpoint="tiny")
    f.add("words", "String", value="a embedding:redcat")
    f.add("text", "TextEncode", clip=link("ckpt", "clip"), text=link("words", "value"))
    f.add("capture", "Capture", value=link("text", "conditioning"))
    emb_engine.run(f.doc("capture"))
    assert "text" not in emb_engine.run(f.doc("capture")).executed
    (embeddings / "new.safetensors").write_bytes((embeddings / "xl-redcat.safetensors").read_bytes())
    try:
        assert "text" in emb_engine.run(f.doc("capture")).executed
    finally:
        (embeddings / "new.safetensors").unlink()


def test_a_long_prompt_samples_with_cfg_and_a_short_negative(engine):
    from .diffusion_helpers import image_of, txt2img

    f = txt2img(prompt="red circle " * 60, negative="blurry", guidance=2.0, steps=1)
    assert image_of(engine, f).shape == (1, 64, 64, 3)
    f = txt2img(prompt="red circle " * 60, guidance=2.0, steps=1)  # the default negative, repeated
    assert image_of(engine, f).shape == (1, 64, 64, 3)
