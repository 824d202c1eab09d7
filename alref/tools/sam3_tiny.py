"""The tiny random-weight SAM 3 checkpoint (``smoke:sam3``): one ``Sam3VideoModel`` folder, laid out like
``facebook/sam3``, from which ``Sam3VideoModel``, ``Sam3Model`` and ``Sam3TrackerVideoModel`` all load
(transformers maps the detector's and the tracker's weights out of a SAM 3 video checkpoint).

It is built offline in about a second: 112 px frames, a 2-layer ViT, one-layer DETR encoder and decoder,
a one-layer CLIP text encoder over a generated BPE vocabulary (every word of the grounding smoke
vocabulary is one token), and a SAM 2-style tracker with 3 memory frames. Random weights make every
score ~0.5, so a few heads are biased (as the SAM 2 smoke model's object-score head is): the presence
head says "present", the query projection is scaled so detection scores spread over ~0.55-0.9 (some
pass the 0.7 new-object threshold, some only the 0.5 detection one), and the tracker's object-score head
says "present". ``hotstart_delay`` is 3 frames, so the hot-start buffering shows on short videos.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alref.tools.sam3_common import RESCALE_FACTOR, SAM3_MEAN, SAM3_STD, TEXT_TOKENS

TINY_SIDE = 112  # 8 x 8 patches of 14 px
TINY_QUERIES = 12
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"


def _byte_symbols() -> list[str]:
    """GPT-2 / CLIP byte-level BPE: the 256 bytes as printable characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    symbols = [*word[:-1], word[-1] + "</w>"]
    while len(symbols) > 1:
        pairs = [ranks[p] for p in zip(symbols, symbols[1:], strict=False) if p in ranks]
        if not pairs:
            break
        best = min(pairs)
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and ranks.get((symbols[i], symbols[i + 1])) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def tiny_tokenizer() -> Any:
    """A CLIP tokenizer over bytes, byte+``</w>`` and merges that make each smoke word one token."""
    from transformers import CLIPTokenizer

    from alref.tools.grounding import tiny_vocab

    words = [w for w in tiny_vocab() if w.isalpha() and w.islower() and len(w) > 1]
    ranks: dict[tuple[str, str], int] = {}
    for word in words:  # greedy: add the first pair BPE leaves until the word is one symbol
        while len(symbols := _bpe(word, ranks)) > 1:
            ranks[(symbols[0], symbols[1])] = len(ranks)
    merges = sorted(ranks, key=ranks.__getitem__)
    chars = _byte_symbols()
    tokens = list(dict.fromkeys(chars + [c + "</w>" for c in chars] + [a + b for a, b in merges]))
    vocab = {token: i for i, token in enumerate([*tokens, _BOS, _EOS])}
    return CLIPTokenizer(
        vocab=vocab, merges=merges, bos_token=_BOS, eos_token=_EOS, pad_token=_EOS, unk_token=_EOS
    )


def tiny_config(vocab_size: int, bos: int, eos: int) -> Any:
    from transformers import Sam3Config, Sam3TrackerVideoConfig, Sam3VideoConfig

    side, hidden = TINY_SIDE, 128  # the tracker needs hidden > 64 (its memory channels are 64)
    grid = side // 14
    vit = {"model_type": "sam3_vit_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 2, "image_size": side, "patch_size": 14, "window_size": 4,
           "global_attn_indexes": [1], "pretrain_image_size": side}  # fmt: skip
    vision = {"model_type": "sam3_vision_model", "backbone_config": vit, "fpn_hidden_size": hidden,
              "backbone_feature_sizes": [[4 * grid] * 2, [2 * grid] * 2, [grid] * 2]}  # fmt: skip
    text = {"model_type": "clip_text_model", "vocab_size": vocab_size, "hidden_size": 32, "intermediate_size": 64,
            "projection_dim": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "max_position_embeddings": TEXT_TOKENS, "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": eos}  # fmt: skip

    def block(**extra: Any) -> dict[str, Any]:
        return {"hidden_size": hidden, "num_attention_heads": 2, "intermediate_size": 256, **extra}

    detector = Sam3Config(
        vision_config=vision, text_config=text, geometry_encoder_config=block(num_layers=1),
        detr_encoder_config=block(num_layers=1), detr_decoder_config=block(num_layers=1, num_queries=TINY_QUERIES),
        mask_decoder_config={"hidden_size": hidden, "num_upsampling_stages": 3, "num_attention_heads": 2},
    )  # fmt: skip
    tracker = Sam3TrackerVideoConfig(
        vision_config=vision, prompt_encoder_config={"hidden_size": hidden, "image_size": side, "patch_size": 14},
        mask_decoder_config={"hidden_size": hidden, "mlp_dim": 256, "num_attention_heads": 2,
                             "iou_head_hidden_dim": hidden},
        memory_attention_hidden_size=hidden, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=256, memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=hidden, memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=256, memory_fuser_num_layers=1, num_maskmem=3,
        max_object_pointers_in_encoder=4, image_size=side,
    )  # fmt: skip
    return Sam3VideoConfig(
        detector_config=detector, tracker_config=tracker, low_res_mask_size=4 * grid, hotstart_delay=3,
        hotstart_unmatch_thresh=2, hotstart_dup_thresh=2, recondition_every_nth_frame=4,
    )  # fmt: skip


def processor_config(side: int, mask_side: int) -> dict[str, Any]:
    """``processor_config.json`` as ``facebook/sam3`` lays it out (image and video processor settings)."""
    common = {"do_resize": True, "size": {"height": side, "width": side}, "resample": 2, "do_rescale": True,
              "rescale_factor": RESCALE_FACTOR, "do_normalize": True, "image_mean": list(SAM3_MEAN),
              "image_std": list(SAM3_STD), "do_convert_rgb": True}  # fmt: skip
    return {
        "processor_class": "Sam3VideoProcessor",
        "target_size": side,
        "image_processor": {"image_processor_type": "Sam3ImageProcessor",
                            "mask_size": {"height": mask_side, "width": mask_side}, **common},
        "video_processor": {"video_processor_type": "Sam2VideoVideoProcessor", **common},
    }  # fmt: skip


def build_tiny(folder: Path) -> None:
    """Write the tiny random SAM 3 checkpoint, its tokenizer and processor settings into ``folder``."""
    import torch
    from transformers import Sam3VideoModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer()
    config = tiny_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = Sam3VideoModel(config).eval()
    with torch.no_grad():
        detector = model.detector_model
        detector.detr_decoder.presence_head.layer3.bias.fill_(10.0)  # "the concept is in the image"
        detector.dot_product_scoring.query_proj.weight.mul_(40.0)  # spread the detection scores
        model.tracker_model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(10.0)  # "object present"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "processor_config.json").write_text(
        json.dumps(processor_config(TINY_SIDE, config.low_res_mask_size))
    )
    (folder / "alref-smoke.json").write_text(
        json.dumps({"note": "random weights: masks and boxes are meaningless"})
    )
