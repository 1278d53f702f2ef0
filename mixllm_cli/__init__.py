"""mixllm: a contextual-bandit LLM router (MixLLM, Wang et al., NAACL 2025).

Nothing heavy is imported here: `import mixllm_cli` must stay instant.
"""

__version__ = "0.1.0"
