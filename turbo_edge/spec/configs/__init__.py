"""Every stage's and app's config, torch-free: the CLI builds its flags from these classes' field metadata."""

from turbo_edge.spec.configs.apps import (
    DEMO_PRESETS,
    BenchConfig,
    DemoConfig,
    EvalConfig,
    GenerateConfig,
    ReportConfig,
    ServeConfig,
)
from turbo_edge.spec.configs.data import DataPrepareConfig, WorldExportConfig
from turbo_edge.spec.configs.deploy import (
    INT8_SCOPES,
    WEIGHT_DTYPES,
    ConvertConfig,
    EngineConfig,
    ExportConfig,
    RuntimeConfig,
    VerifyConfig,
)
from turbo_edge.spec.configs.train import (
    REWARD_NAMES,
    DecoderSamplesConfig,
    DecoderTrainConfig,
    DistillConfig,
    EvaluatorTrainConfig,
    ProbeConfig,
    PruneConfig,
    RewardTerm,
    RewardTrainConfig,
    TeacherExportConfig,
    TeacherTrainConfig,
    TrainLoop,
)

__all__ = [
    "DEMO_PRESETS", "INT8_SCOPES", "REWARD_NAMES", "WEIGHT_DTYPES", "BenchConfig", "ConvertConfig", "DataPrepareConfig", "DecoderSamplesConfig", "DecoderTrainConfig", "DemoConfig", "DistillConfig", "EngineConfig",
    "EvalConfig", "EvaluatorTrainConfig", "ExportConfig", "GenerateConfig", "ProbeConfig", "PruneConfig", "ReportConfig",
    "RewardTerm", "RewardTrainConfig", "RuntimeConfig", "ServeConfig", "TeacherExportConfig", "TeacherTrainConfig", "TrainLoop", "VerifyConfig", "WorldExportConfig",
]
