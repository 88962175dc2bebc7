"""The resident scorer (`mimizuku serve`): config, server loop, pipeline, handled ids, caches, reload, status.

Its wire protocol and client live on the integratord side (:mod:`mimizuku.integratord.protocol`,
:mod:`mimizuku.integratord.client`): this package imports them, never the reverse."""
