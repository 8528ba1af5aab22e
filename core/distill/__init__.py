"""PTM-guided dataset distillation (after Lu et al. 2023), plain PyTorch.

Reading order:
    data.py        DataConfig, load_dataset: MNIST-1D, digits, .npz, torchvision sets
    networks.py    NetConfig, build_network: mlp, convnet, lenet, alexnet, vgg11, resnet18 (1D/2D)
    train.py       TrainConfig, make_optimizer, train_epoch, accuracy (the literature's recipe)
    augment.py     DiffAugment: differentiable Siamese augmentation, 2D and 1D
    ptm.py         PTMPoolConfig, build_pool, load_pool: frozen pre-trained models
    methods.py     dm_loss, dc_loss: the base objectives
    guidance.py    ptm_loss (none/ce/kl/mse/cosine), PTMGuidance (single/ensemble)
    evaluate.py    evaluate_set: K fresh networks trained batched (vmap), final-epoch accuracy
    references.py  random real subset (floor) and full training set (ceiling)
    distill.py     DistillConfig, Distiller (step/evaluate/state_dict), run
    pictures.py    save_picture: curves (1D) or an image grid (2D)
"""
