"""Trainer building blocks: a base with one hook per concern, and mixins that fill the hooks.

A trainer in ``trainers/`` is a composition such as
``class ESUNetDWDRSSTrainer(RSSAugmentation, DWDFocalLoss, ESUNetArchitecture, ExtTrainer)``.
"""
