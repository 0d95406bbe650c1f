"""Network bases shared by several families: the BERT/ALBERT encoder and its masked-LM task, the segment-recurrent
base of Transformer-XL and XLNet and its stream-LM task, and the :class:`~models.networks.backbone.Backbone`
protocol that every family's backbone satisfies."""
