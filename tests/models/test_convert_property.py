"""Property: random configs over every function-relevant field either convert exactly or are refused up front.

Each transformers config (BertConfig, ModernBertConfig) is imported to FlexBERT and the imported model
exported back; each random FlexBERT config that :func:`hf_exporter` accepts is exported. Logits of the
real tokens of a padded batch must agree within ATOL (float32, same weights, only summation order differs).
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, ModernBertConfig, ModernBertForMaskedLM
from transformers.activations import ACT2FN

from bertforge.errors import UserError
from bertforge.models.convert import activations, bert, modernbert
from bertforge.models.convert.rules import FLEXBERT_FIELDS, Ignore, To
from bertforge.models.flexbert.build import hf_exporter
from bertforge.models.flexbert.config import FlexBertConfig
from bertforge.models.flexbert.model import FlexBertForMaskedLM
from tests.conftest import TRANSFORMERS_5
from tests.models.test_convert_fields import _perturbed
from tests.models.test_flexbert_parity import _mixed_batch

ATOL = 1e-5
CASES = 30  # per config class
VOCAB = 97
ACTS = sorted(ACT2FN) + sorted(activations.FROM_HF) * 4  # every name, the convertible ones more often


def _flip(rng: random.Random) -> bool:
    return rng.random() < 0.15


# Values tried per field; the tests below check each table's mapped and restricted fields all appear here.
_SHARED = {"num_hidden_layers": [1, 2, 3], "intermediate_size": [8, 20, 40], "tie_word_embeddings": [True, False],
           "pad_token_id": [0, 3], "chunk_size_feed_forward": [0, 0, 4], "output_hidden_states": [False, True],
           "add_cross_attention": [False] * 6 + [True], "pruned_heads": [{}] * 6 + [{0: [0]}]}
BERT_SPACE = {
    **_SHARED, "hidden_size": [16, 24, 32], "num_attention_heads": [1, 2, 4, 8], "hidden_act": ACTS,
    "hidden_dropout_prob": [0.0, 0.1], "attention_probs_dropout_prob": [0.0, 0.2], "max_position_embeddings": [40, 64],
    "type_vocab_size": [0, 1, 2, 2, 3, 3], "initializer_range": [0.02, 0.2], "layer_norm_eps": [1e-12, 1e-5, 1e-2],
    "position_embedding_type": ["absolute"] * 6 + ["relative_key", "relative_key_query"],
    "is_decoder": [False] * 6 + [True], "classifier_dropout": [None, 0.3], "use_cache": [True, False],
}
MODERNBERT_SPACE = {
    **_SHARED, "hidden_size": [16, 32], "num_attention_heads": [1, 2, 4, 8], "hidden_activation": ACTS,
    "classifier_activation": ACTS, "max_position_embeddings": [64, 128], "initializer_range": [0.02, 0.2],
    "initializer_cutoff_factor": [2.0, 3.0], "norm_eps": [1e-5, 1e-2], "norm_bias": [True, False],
    # None (4.x: local layers take the global theta) became a None theta in 5's rope_parameters, where RoPE fails
    "global_rope_theta": [160000.0, 10000.0], "local_rope_theta": [None] * (not TRANSFORMERS_5) + [10000.0, 500.0],
    "attention_bias": [True, False], "attention_dropout": [0.0, 0.1], "global_attn_every_n_layers": [1, 2, 3],
    "local_attention": [0, 1, 2, 3, 4, 7, 8, 8, 64], "embedding_dropout": [0.0, 0.1], "mlp_bias": [True, False],
    "mlp_dropout": [0.0, 0.1], "decoder_bias": [True, False], "classifier_pooling": ["cls", "mean"],
    "classifier_dropout": [0.0, 0.2], "classifier_bias": [True, False], "deterministic_flash_attn": [False, True],
    "sparse_prediction": [False, True], "sparse_pred_ignore_index": [-100, 0], "repad_logits_with_grad": [False, True],
    "reference_compile": [None, False], "is_decoder": [False, True],
    "rope_scaling": [None] * 5 + [{"rope_type": "linear", "factor": 2.0}],
    "partial_rotary_factor": [None] * 5 + [0.5], "head_dim": [None] * 5 + [4],
}


@pytest.mark.parametrize("table, space", [(bert.IMPORT, BERT_SPACE), (modernbert.IMPORT, MODERNBERT_SPACE)])
def test_sample_spaces_cover_every_field_that_matters(table, space):
    fixed = {"vocab_size"}  # VOCAB: the batch's ids are drawn from it
    fixed |= {"rope_parameters"}  # transformers 5: built from the *_rope_theta keys the space samples
    assert sorted(k for k, rule in table.items() if not isinstance(rule, Ignore) and k not in set(space) | fixed) == []


def _sample(space: dict, rng: random.Random) -> dict:
    values = {k: rng.choice(v) for k, v in space.items()}
    return {k: v for k, v in values.items() if v is not None or k in ("classifier_dropout", "local_rope_theta")}


def _logits(model, ids, mask, types=None) -> torch.Tensor:
    with torch.no_grad():
        if isinstance(model, FlexBertForMaskedLM):
            return model(ids, mask, token_type_ids=types).logits[mask.bool()]
        extra = {} if types is None else {"token_type_ids": types}
        return model(input_ids=ids, attention_mask=mask, return_dict=True, **extra).logits[mask.bool()]


def _round_trip(hf, to_config, to_state, export, types_of) -> str:
    """Import ``hf``'s config (refusal: 'refused'), then its weights, compare; export back, compare."""
    try:
        cfg = to_config(hf.config)
    except UserError:
        return "refused"
    hf = _perturbed(hf, 1)
    ours = FlexBertForMaskedLM(cfg)
    ours.load_state_dict(to_state(hf.state_dict(), cfg))
    ids, mask = _mixed_batch(VOCAB, lengths=(11, 3, 17, 1))
    types = types_of(ids)
    torch.testing.assert_close(_logits(ours.eval(), ids, mask, types), _logits(hf, ids, mask, types),
                               rtol=0, atol=ATOL)
    back = export(_perturbed(ours, 2))
    torch.testing.assert_close(_logits(back, ids, mask, types), _logits(ours, ids, mask, types), rtol=0, atol=ATOL)
    to_config(back.config)  # what we write imports again
    return "exact"


def test_random_bert_configs_round_trip_or_refuse():
    rng, seen = random.Random(0), []
    for case in range(CASES):
        kwargs = _sample(BERT_SPACE, rng)
        torch.manual_seed(case)
        try:
            hf = BertForMaskedLM(BertConfig(vocab_size=VOCAB, **kwargs)).eval()
        except ValueError:  # transformers itself rejects it (e.g. heads not dividing the width)
            continue
        def types_of(ids, n=kwargs["type_vocab_size"]):
            return torch.randint(0, n, ids.shape) if n else None

        seen.append(_round_trip(hf, bert.flexbert_config_from_bert, bert.flexbert_state_from_bert, bert.to_bert,
                                types_of))
    assert seen.count("exact") >= 4 and seen.count("refused") >= 4, seen


def test_random_modernbert_configs_round_trip_or_refuse():
    rng, seen = random.Random(1), []
    for case in range(CASES):
        kwargs = _sample(MODERNBERT_SPACE, rng)
        torch.manual_seed(case)
        try:
            hf = ModernBertForMaskedLM(ModernBertConfig(vocab_size=VOCAB, attn_implementation="sdpa", **kwargs))
        except (ValueError, KeyError, AttributeError):  # transformers itself rejects it (pruned_heads: no _prune_heads)
            continue
        seen.append(_round_trip(hf.eval(), modernbert.flexbert_config_from_modernbert,
                                modernbert.flexbert_state_from_modernbert, modernbert.to_modernbert, lambda ids: None))
    assert seen.count("exact") >= 4 and seen.count("refused") >= 4, seen


FLEXBERT_SPACE = {
    "hidden_size": [16, 32], "num_hidden_layers": [1, 2, 3], "num_attention_heads": [2, 4],
    "intermediate_size": [8, 24], "position_encoding": ["rope", "alibi", "learned", "none"],
    "max_position_embeddings": [64], "type_vocab_size": [0, 2], "embedding_norm": [True, False],
    "embedding_dropout": [0.0, 0.1], "rope_theta_global": [160000.0, 500.0], "rope_theta_local": [10000.0, 50.0],
    "local_attention_window": [None, 2, 5, 8], "global_attention_every_n_layers": [1, 2, 3],
    "attention_bias": [True, False], "attention_dropout": [0.0, 0.1], "attention_backend": ["auto", "varlen", "sdpa"],
    "mlp_type": ["mlp", "glu"], "hidden_activation": list(activations.TO_HF), "mlp_bias": [True, False],
    "mlp_dropout": [0.0, 0.1], "hidden_dropout": [0.0, 0.1], "norm_type": ["layernorm", "rmsnorm"],
    "norm_bias": [True, False], "norm_eps": [1e-5, 1e-2], "block_type": ["prenorm", "postnorm"],
    "first_layer_attn_norm": [True, False], "final_norm": [True, False], "head_dense": [True, False],
    "head_activation": list(activations.TO_HF), "head_norm": [True, False], "head_bias": [True, False],
    "tie_word_embeddings": [True, False], "decoder_bias": [True, False], "init_std": [0.02, 0.1],
    "init_depth_scaled": [True, False], "unpad": [True, False],
}


def test_flexbert_sample_space_covers_every_field_that_matters():
    exported = {k for table in (bert.EXPORT, modernbert.EXPORT) for k, rule in table.items()
                if not isinstance(rule, Ignore) or k in ("unpad", "attention_backend")}
    assert sorted(exported - set(FLEXBERT_SPACE) - {"vocab_size"}) == [] and set(FLEXBERT_SPACE) <= set(FLEXBERT_FIELDS)


def test_random_flexbert_configs_export_exactly_whenever_the_precheck_accepts():
    rng, seen = random.Random(2), []
    forms = [dict(modernbert.MODERNBERT_FORM, hidden_activation="gelu", head_activation="gelu"),
             dict(bert.BERT_FORM, type_vocab_size=2, hidden_activation="gelu", head_activation="gelu",
                  embedding_dropout=0.0, hidden_dropout=0.0)]
    for case in range(CASES):
        values = dict(forms[case % 2])  # start from an exportable form, then change fields at random
        values.update({k: rng.choice(v) for k, v in FLEXBERT_SPACE.items() if k not in values or _flip(rng)})
        try:
            cfg = FlexBertConfig(vocab_size=VOCAB, **values)
        except UserError:
            continue
        exporter = hf_exporter(cfg)
        if exporter is None:
            seen.append("refused")
            continue
        torch.manual_seed(case)
        ours = _perturbed(FlexBertForMaskedLM(cfg), 3)
        ids, mask = _mixed_batch(VOCAB, lengths=(11, 3, 17, 1))
        types = torch.randint(0, 2, ids.shape) if cfg.type_vocab_size else None
        hf = exporter(ours)
        torch.testing.assert_close(_logits(hf, ids, mask, types), _logits(ours, ids, mask, types), rtol=0, atol=ATOL)
        seen.append(exporter.__name__)
    assert seen.count("to_bert") >= 4 and seen.count("to_modernbert") >= 4 and "refused" in seen, seen


def test_mapped_fields_are_exported_by_name():
    """Every To rule of an export names a field the transformers config really has (no typo is silently dropped)."""
    for table, config_class in ((bert.EXPORT, BertConfig), (modernbert.EXPORT, ModernBertConfig)):
        fields = config_class().to_dict()
        for name, rule in table.items():
            if not isinstance(rule, To) or rule.fn is not None:
                continue
            target = rule.target or name
            if TRANSFORMERS_5 and target not in fields:  # 5 folds 4.x keywords (*_rope_theta) into rope_parameters
                assert "4321.0" in json.dumps(config_class(**{target: 4321.0}).to_dict()), name
            else:
                assert target in fields, name
