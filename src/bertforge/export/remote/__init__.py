"""bertforge's transformers classes (``model_type: bertforge``), registered with the Auto classes on import so that
exported folders load without ``trust_remote_code`` wherever bertforge is imported; ``save_pretrained`` writes
these files into the folder so that they also load, with ``trust_remote_code=True``, where it is not."""

from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification

from bertforge.export.remote.configuration_bertforge import BertforgeConfig
from bertforge.export.remote.modeling_bertforge import (
    FAMILIES,
    BertforgeForMaskedLM,
    BertforgeForSequenceClassification,
    BertforgeModel,
)

AutoConfig.register(BertforgeConfig.model_type, BertforgeConfig, exist_ok=True)
AutoModel.register(BertforgeConfig, BertforgeModel, exist_ok=True)
AutoModelForMaskedLM.register(BertforgeConfig, BertforgeForMaskedLM, exist_ok=True)
AutoModelForSequenceClassification.register(BertforgeConfig, BertforgeForSequenceClassification, exist_ok=True)
BertforgeConfig.register_for_auto_class()
BertforgeModel.register_for_auto_class("AutoModel")
BertforgeForMaskedLM.register_for_auto_class("AutoModelForMaskedLM")
BertforgeForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = ["FAMILIES", "BertforgeConfig", "BertforgeForMaskedLM", "BertforgeForSequenceClassification",
           "BertforgeModel"]
