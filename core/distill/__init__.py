"""PTM-guided dataset distillation (after Lu et al. 2023), plain PyTorch.

Reading order:
    data.py        DataConfig, load_dataset: MNIST-1D, digits, .npz, torchvision sets
    networks.py    NetConfig, build_network: mlp, convnet, lenet, alexnet, vgg11, resnet18 (1D/2D)
    train.py       TrainConfig, make_optimizer, train_epoch, accuracy (the literature's recipe)
    augment.py     DiffAugment: differentiable Siamese augmentation, 2D and 1D
    ptm.py         PTMPoolConfig, build_pool, load_pool: frozen pre-trained models
    methods.py     dm_loss, dc_loss: the base objectives
    guidance.py    ptm_loss (ce/kl/mse/cosine), PTMGuidance (single/ensemble)
    config.py      DistillConfig: base method, synthetic set, PTM term, evaluation protocol
    distiller.py   Distiller: the loop (step, gradient ratio, relative alpha, state_dict)
    evaluate.py    evaluate_set (K fresh networks, batched), evaluate_synthetic (the protocol)
    references.py  random real subsets (floor) and the full training set (ceiling)
    pictures.py    save_picture: curves (1D) or an image grid (2D)
    experiment.py  ExperimentConfig, run (stages -> metric windows), check (without training)
    classifier.py  ClassifierConfig, run: one network trained on a dataset (the quickstart)
"""
