"""The merchant stage: merchant features that see the whole merchant, however many partitions.

Cards are the partition key, so a card worker sees only its partitions' share of a merchant's
transactions and labels. As Kafka Streams does with a repartition topic and a global table:

1. the card stage sends each transaction and label, keyed by merchant, to ``<group>.by-merchant``
   (:mod:`.records`), in the same Kafka transaction as its scores;
2. the merchant stage (:mod:`.stage`, ``stream-scorer merchants``) folds them into each merchant's
   windows and label-time fraud rates (:mod:`.book`), and publishes the merchant's state to the
   compacted ``<group>.merchant-features``, exactly once; that topic is also its changelog;
3. every card worker reads that topic whole (:mod:`.table_reader`) into a :class:`.table.MerchantTable`
   and reads a merchant's features from it at the event's time.

The same path makes two more things whole: the quantile sketches of the bin indicators
(:mod:`.sketches`: each transaction's binned values ride its record; the stage counts them, every
worker sums the counts) and the model (:mod:`.learning`: workers send their labelled feature
vectors to ``<group>.learn``, the stage's learner trains one champion and challenger on all of
them and publishes them to ``<group>.model``; :mod:`.model_reader` adopts them).
"""
