"""The ranking study: do trained supernets rank architectures as training them from scratch does?

``python -m scarlet.rank study`` and ``python -m scarlet.rank cosine`` (:mod:`scarlet.rank.cli`).
"""
