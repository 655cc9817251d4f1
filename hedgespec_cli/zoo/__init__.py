"""The built-in tiny model zoo: corpora, shared tokenizer, target pretraining, drafter distillation.

Entry points: `hedgespec_cli.zoo.build.build_zoo` and `hedgespec_cli.zoo.info.zoo_info`
(imported from their modules, so importing this package stays cheap).
"""
